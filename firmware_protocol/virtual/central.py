"""A reference central: the hub's half of the contract in plain Bumble, no bleak.

It exists to check the firmware against the protocol from the outside (tests, the
``emulate --check`` smoke run); the hub itself speaks bleak's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from bumble import pairing
from bumble.core import UUID
from bumble.device import Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy

from firmware_protocol import gatt as uuids
from firmware_protocol._codec import Frame, decode
from firmware_protocol._errors import FirmwareProtocolError
from firmware_protocol.advertising import SensorAdvertisement
from firmware_protocol.control import Command, Response


@dataclass(frozen=True, slots=True)
class Sighting:
    """One of our sensors seen advertising."""

    address: str
    name: str | None
    rssi: int
    advertisement: SensorAdvertisement


class ReferenceCentral:
    """Scan for sensors and connect to them with a Bumble device."""

    def __init__(self, device: Device) -> None:
        self.device = device
        device.pairing_config_factory = lambda _connection: pairing.PairingConfig(
            sc=True,
            mitm=False,
            bonding=True,
            identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
        )

    async def __aenter__(self) -> ReferenceCentral:
        await self.device.power_on()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await connection.disconnect()

    async def scan(self, duration: float = 1.0) -> dict[str, Sighting]:
        """Return our sensors heard within ``duration`` seconds, by address."""
        found: dict[str, Sighting] = {}

        def on_advertisement(advertisement: object) -> None:
            data = advertisement.data  # type: ignore[attr-defined]
            manufacturer = data.get_all(data.MANUFACTURER_SPECIFIC_DATA)
            try:
                ours = SensorAdvertisement.from_manufacturer_data(dict(manufacturer))
            except FirmwareProtocolError:
                return
            if ours is not None:
                address = str(advertisement.address)  # type: ignore[attr-defined]
                found[address] = Sighting(
                    address=address,
                    name=data.get(data.COMPLETE_LOCAL_NAME),
                    rssi=advertisement.rssi,  # type: ignore[attr-defined]
                    advertisement=ours,
                )

        self.device.on(self.device.EVENT_ADVERTISEMENT, on_advertisement)
        try:
            await self.device.start_scanning(filter_duplicates=False)
            await asyncio.sleep(duration)
            await self.device.stop_scanning()
        finally:
            self.device.remove_listener(self.device.EVENT_ADVERTISEMENT, on_advertisement)
        return found

    async def connect(self, address: str, *, mtu: int = uuids.PREFERRED_ATT_MTU) -> SensorLink:
        """Connect, exchange the MTU and discover the sensor service."""
        connection = await self.device.connect(address)
        link = SensorLink(connection)
        await link.setup(mtu)
        return link


class SensorLink:
    """One connection to a sensor: pairing, data subscription and commands."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.peer = Peer(connection)
        self._tokens = itertools.cycle(range(256))
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._data: CharacteristicProxy[bytes] | None = None
        self._control: CharacteristicProxy[bytes] | None = None
        self._status: CharacteristicProxy[bytes] | None = None
        self._on_frame: Callable[[Frame], None] | None = None

    async def setup(self, mtu: int) -> None:
        """Exchange the ATT MTU and find the characteristics."""
        await self.peer.request_mtu(mtu)
        await self.peer.discover_services([UUID(uuids.SERVICE_UUID)])
        services = self.peer.get_services_by_uuid(UUID(uuids.SERVICE_UUID))
        if not services:
            raise FirmwareProtocolError(f"{self.connection.peer_address} has no sensor service")
        await services[0].discover_characteristics()

        def find(uuid: str) -> CharacteristicProxy[bytes]:
            found = services[0].get_characteristics_by_uuid(UUID(uuid))
            if not found:
                raise FirmwareProtocolError(f"sensor lacks characteristic {uuid}")
            return found[0]

        self._data = find(uuids.DATA_CHAR_UUID)
        self._control = find(uuids.CONTROL_POINT_UUID)
        self._status = find(uuids.STATUS_CHAR_UUID)
        for characteristic in (self._data, self._control, self._status):
            await characteristic.discover_descriptors()

    @property
    def att_mtu(self) -> int:
        """The ATT MTU in force."""
        return int(self.connection.att_mtu)

    async def pair(self) -> None:
        """Bond with the sensor (LE Secure Connections, Just Works)."""
        await self.connection.pair()

    async def encrypt(self) -> None:
        """Encrypt the link with an existing bond."""
        await self.connection.encrypt()

    async def subscribe_data(self, on_frame: Callable[[Frame], None]) -> None:
        """Subscribe to data frames; ``on_frame`` gets each decoded frame."""
        assert self._data is not None
        self._on_frame = on_frame
        # The same bound method every time: Bumble keeps a failed subscription's handler,
        # and a fresh lambda per attempt would deliver every value twice after a retry.
        await self._data.subscribe(self._on_data, prefer_notify=True)

    def _on_data(self, value: bytes) -> None:
        if self._on_frame is not None:
            self._on_frame(decode(value))

    async def read_status(self) -> Frame:
        """Read the status characteristic."""
        assert self._status is not None
        return decode(await self._status.read_value())

    async def enable_commands(self) -> None:
        """Subscribe to control-point indications, where responses arrive."""
        assert self._control is not None
        await self._control.subscribe(self._on_response, prefer_notify=False)

    def _on_response(self, value: bytes) -> None:
        self._responses.put_nowait(Response.decode(value))

    async def send_raw(self, data: bytes) -> Response:
        """Write raw bytes to the control point and return the response they draw.

        It waits as long as the sensor takes: callers bound it with ``asyncio.timeout``.
        """
        assert self._control is not None
        await self._control.write_value(data, with_response=True)
        return await self._responses.get()

    async def command(self, command: Command) -> Response:
        """Send a command (its token is replaced) and return its response."""
        token = next(self._tokens)
        command = dataclasses.replace(command, token=token)
        response = await self.send_raw(bytes(command))
        if response.token != token:
            raise FirmwareProtocolError(f"response token {response.token} is not {token}")
        return response

    async def disconnect(self) -> None:
        """Disconnect from the sensor."""
        await self.connection.disconnect()
