"""A bleak backend on a Bumble host: any Bumble transport, or the virtual radio.

bleak lets a caller pass its own backend classes (``BleakScanner(backend=…)``,
``BleakClient(backend=…)``); these are ours. One :class:`BumbleHost` per hub process
owns a Bumble device on one transport (a USB dongle, a serial HCI controller, HCI over
TCP to the virtual radio, or a controller on an in-process virtual radio); every
scanner and client made with ``host=`` that host shares it, as every BleakClient on
BlueZ shares one adapter. Bonds are kept in a JSON key store in the hub's state
directory, so a restarted hub encrypts with the bond it already has.

Errors leave these classes as bleak's own (``BleakError``), as every bleak backend's
do: the code above speaks bleak's API and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bumble import keys, pairing, smp
from bumble.controller import Controller
from bumble.core import AdvertisingData, BaseBumbleError, ProtocolError
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy
from bumble.hci import Address, HCI_Error, HCI_ErrorCode, HCI_Read_BD_ADDR_Command
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

from firmware_protocol.virtual.quiet import QuietDevice, QuietHost
from sensorhub.ble._tasks import cancelled_by_us
from sensorhub.errors import BondLostError, StateError
from sensorhub.state import changing, create_once, replace_file

log = logging.getLogger(__name__)

PREFERRED_MTU = 247
_KEY_REFUSED = frozenset(
    {HCI_ErrorCode.PIN_OR_KEY_MISSING_ERROR, HCI_ErrorCode.AUTHENTICATION_FAILURE_ERROR}
)
"""How a controller reports a peer that has no key for our bond (it refused the LTK)."""
_PROPERTY_NAMES = {
    0x01: "broadcast",
    0x02: "read",
    0x04: "write-without-response",
    0x08: "write",
    0x10: "notify",
    0x20: "indicate",
    0x40: "authenticated-signed-writes",
    0x80: "extended-properties",
}


class PairingRefusedError(BleakError):
    """The sensor answered a pairing request with "pairing not supported": it is not in
    pairing mode, so it takes no new bond (PROTOCOL.md, "Security")."""


class _PrivateKeyStore(keys.JsonKeyStore):
    """Bumble's JSON key store, readable by its owner only, changed by one process at once.

    Bumble reads the file, changes it and writes it back through one fixed temporary
    name: a bond made by ``pair`` while a running hub bonded or forgot another could be
    dropped, or the two writes garble the file and every bond with it. Here a change
    holds the file's lock from reading to writing (in a worker thread, the event loop
    does not wait for the disk) and writes through a file of its own, synced. Reads need
    no lock: the file is only ever replaced whole.
    """

    async def update(self, name: str, bond: keys.PairingKeys) -> None:
        values = bond.to_dict()
        await self._change(lambda key_map: key_map.setdefault(name, {}).update(values))

    async def delete(self, name: str) -> None:
        await self._change(lambda key_map: key_map.pop(name))  # KeyError, as Bumble's

    async def delete_all(self) -> None:
        await self._change(lambda key_map: key_map.clear())

    async def save(self, db: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Bumble's own writes (none but the three above today): whole, synced, private."""
        text = json.dumps(db, sort_keys=True, indent=4)
        await asyncio.to_thread(replace_file, Path(self.filename), text, "bond store")

    async def _change(self, change: Callable[[dict[str, dict[str, Any]]], object]) -> None:
        await asyncio.to_thread(self._change_now, change)

    def _change_now(self, change: Callable[[dict[str, dict[str, Any]]], object]) -> None:
        path = Path(self.filename)
        with changing(path, "bond store"):
            try:
                db = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                db = {}
            except (OSError, ValueError) as exc:
                raise StateError(f"cannot read bond store {path}: {exc}") from exc
            change(db.setdefault(self.namespace, {}))
            replace_file(path, json.dumps(db, sort_keys=True, indent=4), "bond store")


def hub_address(state_dir: Path) -> str:
    """Return this hub's static random address, made once and kept in the state directory.

    The bonds are kept under it: it must never change. A hub and a command started at
    once on a new state directory agree on one (the first written wins, whole).
    """
    path = state_dir / "hub-address"
    if not path.exists():
        raw = bytearray(secrets.token_bytes(6))
        raw[0] |= 0xC0  # static random: the two top bits set
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds the bonds
            create_once(path, ":".join(f"{byte:02X}" for byte in raw) + "\n")
        except OSError as exc:
            raise StateError(f"cannot write the hub's address {path}: {exc.strerror}") from exc
    try:
        address = path.read_text(encoding="ascii").strip()
        Address(address)
    except OSError as exc:
        raise StateError(f"cannot read the hub's address {path}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(
            f"the hub's address in {path} is damaged ({exc}); the bonds are kept under it: "
            "restore it from a backup, or remove it and pair every sensor again"
        ) from exc
    return address


class BumbleHost:
    """One Bumble device shared by every scanner and client of a hub; an async context manager.

    Make it with :meth:`open` (a transport moniker) or :meth:`on_controller` (a
    controller on an in-process virtual radio).
    """

    def __init__(self, device: Device, transport: Transport | None = None) -> None:
        self.device = device
        self._transport = transport
        self._advertisement_listeners: set[Callable[[Advertisement], None]] = set()
        self._scanners = 0
        self._scan_lock = asyncio.Lock()
        self.last_seen: dict[str, Advertisement] = {}
        device.on(device.EVENT_ADVERTISEMENT, self._on_advertisement)
        device.pairing_config_factory = lambda _connection: pairing.PairingConfig(
            sc=True,
            mitm=False,
            bonding=True,
            identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
        )

    @classmethod
    async def open(cls, moniker: str, *, state_dir: Path) -> BumbleHost:
        """Open a Bumble transport (``usb:0``, ``serial:…``, ``tcp-client:HOST:PORT`` …)."""
        address = hub_address(state_dir)
        try:
            transport = await open_transport(moniker)
        except (OSError, BaseBumbleError, ValueError) as exc:
            raise BleakError(f"cannot open Bluetooth transport {moniker!r}: {exc}") from exc
        device = QuietDevice(
            name="sensorhub",
            address=Address(address),
            host=QuietHost(transport.source, transport.sink),
        )
        device.keystore = _PrivateKeyStore(address, str(state_dir / "bonds.json"))
        return cls(device, transport)

    @classmethod
    def on_controller(cls, controller: Controller, *, state_dir: Path) -> BumbleHost:
        """Use a controller of an in-process virtual radio."""
        address = hub_address(state_dir)
        device = QuietDevice(
            name="sensorhub",
            address=Address(address),
            host=QuietHost(controller, AsyncPipeSink(controller)),
        )
        device.keystore = _PrivateKeyStore(address, str(state_dir / "bonds.json"))
        return cls(device)

    async def __aenter__(self) -> BumbleHost:
        await self.power_on()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def power_on(self) -> None:
        """Reset the controller and set it up (the caller bounds the wait)."""
        try:
            await self.device.power_on()
        except (BaseBumbleError, HCI_Error, OSError) as exc:
            raise BleakError(f"Bluetooth controller did not start: {exc}") from exc

    async def close(self) -> None:
        """Disconnect every sensor, then close the transport."""
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await connection.disconnect()
        await self.abandon()

    async def abandon(self) -> None:
        """Close the transport at once, with no goodbyes: a lost radio answers none."""
        if self._transport is not None:
            with contextlib.suppress(Exception):
                await self._transport.close()

    @property
    def transport_closed(self) -> asyncio.Future[None] | None:
        """Done once the transport has closed under us (None: no transport, nothing to close)."""
        if self._transport is None:
            return None
        return self._transport.source.terminated

    async def probe(self, *, timeout: float) -> None:
        """Ask the controller for its BD_ADDR; BleakError if no answer comes within ``timeout``.

        Bumble never notices a controller that stopped answering: a scan just hears
        nothing, and a command waits for ever. Any answer, even an error status, shows
        the controller is alive.
        """
        try:
            async with asyncio.timeout(timeout):
                await self.device.host.send_sync_command_raw(HCI_Read_BD_ADDR_Command())
        except TimeoutError:
            raise BleakError(f"the Bluetooth controller did not answer for {timeout:g} s") from None
        except (BaseBumbleError, HCI_Error, OSError) as exc:
            raise BleakError(f"the Bluetooth controller failed: {exc!r}") from exc

    # Scanning is shared: it runs while any scanner (or a link waiting for its sensor)
    # wants it, and every listener hears every advertisement.

    async def acquire_scan(self, listener: Callable[[Advertisement], None]) -> None:
        """Start hearing advertisements (scanning starts with the first listener)."""
        async with self._scan_lock:
            self._advertisement_listeners.add(listener)
            self._scanners += 1
            if self._scanners == 1:
                await self.device.start_scanning(filter_duplicates=False)

    async def release_scan(self, listener: Callable[[Advertisement], None]) -> None:
        """Stop hearing advertisements (scanning stops with the last listener)."""
        async with self._scan_lock:
            self._advertisement_listeners.discard(listener)
            self._scanners = max(0, self._scanners - 1)
            if self._scanners == 0:
                with contextlib.suppress(Exception):
                    await self.device.stop_scanning()

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        self.last_seen[str(advertisement.address)] = advertisement
        for listener in list(self._advertisement_listeners):
            listener(advertisement)

    async def is_bonded(self, address: str) -> bool:
        """Whether a bond with ``address`` is in the key store."""
        store = self.device.keystore
        return store is not None and await store.get(_address_key(address)) is not None

    async def forget(self, address: str) -> None:
        """Delete the bond with ``address``."""
        store = self.device.keystore
        if store is not None:
            with contextlib.suppress(KeyError):
                await store.delete(_address_key(address))


def _ignore(_advertisement: Advertisement) -> None:
    pass


def _address_key(address: str) -> str:
    return str(Address(address, Address.RANDOM_DEVICE_ADDRESS))


def _advertisement_data(advertisement: Advertisement) -> AdvertisementData:
    data = advertisement.data
    manufacturer = dict(data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA))
    service_uuids: list[str] = []
    for kind in (
        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    ):
        for group in data.get_all(kind):
            service_uuids.extend(str(uuid).lower() for uuid in group)
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
        AdvertisingData.SHORTENED_LOCAL_NAME
    )
    tx_power = data.get(AdvertisingData.TX_POWER_LEVEL)
    return AdvertisementData(
        local_name=name if isinstance(name, str) else None,
        manufacturer_data={int(k): bytes(v) for k, v in manufacturer.items()},
        service_data={},
        service_uuids=service_uuids,
        tx_power=tx_power if isinstance(tx_power, int) else None,
        rssi=int(advertisement.rssi),
        platform_data=(advertisement,),
    )


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend on a :class:`BumbleHost` (pass ``host=``)."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        host: BumbleHost,
        **_kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._host = host
        del scanning_mode  # Bumble scans actively; passive scanning is not needed here

    async def start(self) -> None:
        """Start scanning."""
        self.seen_devices = {}
        try:
            await self._host.acquire_scan(self._on_advertisement)
        except (BaseBumbleError, HCI_Error) as exc:
            raise BleakError(f"scanning failed to start: {exc}") from exc

    async def stop(self) -> None:
        """Stop scanning."""
        await self._host.release_scan(self._on_advertisement)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        data = _advertisement_data(advertisement)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = str(advertisement.address)
        device = self.create_or_update_device(
            address, address, data.local_name, advertisement, data
        )
        self.call_detection_callbacks(device, data)


class BumbleClient(BaseBleakClient):
    """bleak client backend on a :class:`BumbleHost` (pass ``host=``).

    As an operating system does, it encrypts a link with the stored bond as soon as it
    connects, so reads and subscriptions that need encryption just work.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        host: BumbleHost,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **_kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._host = host
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}
        self._callbacks: dict[int, NotifyCallback] = {}

    @property
    def name(self) -> str:
        """The peer's advertised name, or its address."""
        seen = self._host.last_seen.get(self.address)
        name = seen.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) if seen else None
        return name if isinstance(name, str) else self.address

    @property
    def mtu_size(self) -> int:
        """The ATT MTU in force."""
        return int(self._connection.att_mtu) if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, encrypt with the bond if there is one (or pair if asked), discover services."""
        timeout = float(kwargs.get("timeout", self._timeout))
        device = self._host.device
        # Scan while connecting: with a bond holding the sensor's IRK, Bumble first looks
        # for the sensor's current address among advertisements, and must hear them.
        await self._host.acquire_scan(_ignore)
        try:
            async with asyncio.timeout(timeout):
                connection = await device.connect(Address(self.address), timeout=None)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await device.cancel_connection()  # type: ignore[no-untyped-call]
            raise BleakDeviceNotFoundError(
                self.address, f"{self.address} did not answer within {timeout:g} s"
            ) from None
        except (BaseBumbleError, HCI_Error) as exc:
            raise BleakError(f"connecting to {self.address} failed: {exc}") from exc
        finally:
            await self._host.release_scan(_ignore)
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            async with asyncio.timeout(timeout):
                self._peer = Peer(connection)
                await self._peer.request_mtu(PREFERRED_MTU)
                if await self._host.is_bonded(self.address):
                    await self._encrypt(connection)
                elif pair:
                    await connection.pair()
                await self._discover()
        except BondLostError:
            await self.disconnect()
            raise
        except (TimeoutError, BaseBumbleError, HCI_Error) as exc:
            await self.disconnect()
            raise BleakError(f"setting up the link to {self.address} failed: {exc!r}") from exc
        except asyncio.CancelledError:
            if cancelled_by_us():
                raise
            await self.disconnect()
            raise BleakError(f"the link to {self.address} went down while setting it up") from None

    async def _encrypt(self, connection: Connection) -> None:
        """Encrypt with the stored bond; a sensor that has no key for it lost the bond."""
        try:
            await connection.encrypt()
        except HCI_Error as exc:
            if exc.error_code in _KEY_REFUSED:
                raise BondLostError(self.address) from exc
            raise

    def _on_disconnection(self, _reason: int) -> None:
        was_connected = self._connection is not None
        self._connection = None
        self._peer = None
        self._subscriptions.clear()
        self._callbacks.clear()
        if was_connected and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _discover(self) -> None:
        assert self._peer is not None
        peer = self._peer
        await peer.discover_services()
        collection = BleakGATTServiceCollection()
        for service in peer.services:
            bleak_service = BleakGATTService(service, service.handle, str(service.uuid).lower())
            collection.add_service(bleak_service)
            await service.discover_characteristics()
            for characteristic in service.characteristics:
                await characteristic.discover_descriptors()
                properties = [
                    name for bit, name in _PROPERTY_NAMES.items() if characteristic.properties & bit
                ]
                bleak_characteristic = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    str(characteristic.uuid).lower(),
                    properties,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_characteristic)
                for descriptor in characteristic.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor,
                            descriptor.handle,
                            str(descriptor.type).lower(),
                            bleak_characteristic,
                        )
                    )
        self.services = collection

    async def disconnect(self) -> None:
        """Disconnect (no disconnected callback: that is for unsolicited loss)."""
        connection, self._connection = self._connection, None
        self._peer = None
        if connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await connection.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Bond with the peer (LE Secure Connections)."""
        connection = self._require_connection()
        try:
            await connection.pair()
        except ProtocolError as exc:
            if (
                exc.error_namespace == "smp"
                and exc.error_code == smp.ErrorCode.PAIRING_NOT_SUPPORTED
            ):
                raise PairingRefusedError(
                    f"{self.address} refused to pair (not in pairing mode)"
                ) from exc
            raise BleakError(f"pairing with {self.address} failed: {exc}") from exc
        except (BaseBumbleError, HCI_Error) as exc:
            raise BleakError(f"pairing with {self.address} failed: {exc}") from exc

    async def unpair(self) -> None:
        """Forget the bond and disconnect."""
        await self.disconnect()
        await self._host.forget(self.address)

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        return self._connection

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic."""
        self._require_connection()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        return bytearray(await _att(proxy.read_value(), self.address))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a descriptor."""
        self._require_connection()
        proxy: DescriptorProxy = descriptor.obj
        return bytearray(await _att(proxy.read_value(), self.address))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Write a characteristic, with or without response."""
        self._require_connection()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        await _att(proxy.write_value(bytes(data), with_response=response), self.address)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Write a descriptor."""
        self._require_connection()
        proxy: DescriptorProxy = descriptor.obj
        await _att(proxy.write_value(bytes(data), with_response=True), self.address)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe; notifications preferred over indications, as bleak promises."""
        self._require_connection()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        handle = characteristic.handle
        self._callbacks[handle] = callback
        handler = self._subscriptions.get(handle)
        if handler is None:
            # One handler per characteristic, calling the latest callback: Bumble keeps a
            # handler whose subscription failed, so a fresh one per attempt would deliver
            # every value twice, and an old one would call a stale callback.
            handler = functools.partial(self._dispatch, handle)
            self._subscriptions[handle] = handler
        prefer_notify = "notify" in characteristic.properties
        await _att(proxy.subscribe(handler, prefer_notify=prefer_notify), self.address)

    def _dispatch(self, handle: int, value: bytes) -> None:
        callback = self._callbacks.get(handle)
        if callback is not None:
            callback(bytearray(value))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe."""
        self._require_connection()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        self._callbacks.pop(characteristic.handle, None)
        handler = self._subscriptions.pop(characteristic.handle, None)
        await _att(proxy.unsubscribe(handler), self.address)


async def _att(operation: Any, address: str) -> Any:
    try:
        return await operation
    except (BaseBumbleError, HCI_Error) as exc:
        raise BleakError(f"{address}: {exc}") from exc
    except asyncio.CancelledError:
        if cancelled_by_us():
            raise
        raise BleakError(f"{address}: the link went down during a request") from None


__all__ = ["BumbleClient", "BumbleHost", "BumbleScanner", "PairingRefusedError", "hub_address"]
