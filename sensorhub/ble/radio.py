"""Choosing the radio: bleak's native backend, a Bumble transport, or the virtual radio.

Whatever is chosen, the hub gets the same two things: ``BleakScanner`` and
``BleakClient`` objects. Only how they are made differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementDataCallback
from bleak.exc import BleakError

from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble.bumble_backend import BumbleClient, BumbleHost, BumbleScanner
from sensorhub.ble.spec import NATIVE, VIRTUAL, check_ble_spec
from sensorhub.errors import BluetoothError

SYSTEM_BLUETOOTH_TIMEOUT_S: Final = 5.0
OTHER_RADIOS: Final = (
    "choose a radio with --ble: usb:0 (a USB Bluetooth dongle, driven directly), "
    "serial:/dev/ttyACM0 (a controller on a serial port), tcp-client:HOST:PORT (HCI over "
    "TCP, e.g. to `sensorhub emulate`), or virtual (virtual sensors in this process)"
)


async def _check_system_bluetooth() -> None:
    """Raise BluetoothError, naming the other radios, if the OS has no Bluetooth for bleak.

    On Linux bleak speaks to BlueZ over the D-Bus system bus. Without them every scan
    failed with a bare ``[Errno 2] No such file or directory``, and a running hub searched
    for its sensors in silence until the error ended it. Elsewhere (CoreBluetooth, WinRT)
    bleak's own errors say what is wrong.
    """
    if sys.platform != "linux":
        return
    from bleak.backends.bluezdbus.manager import get_global_bluez_manager  # noqa: PLC0415

    try:
        async with asyncio.timeout(SYSTEM_BLUETOOTH_TIMEOUT_S):
            manager = await get_global_bluez_manager()
        manager.get_default_adapter()
    except TimeoutError:  # before OSError, of which it is one
        why = f"the D-Bus system bus did not answer within {SYSTEM_BLUETOOTH_TIMEOUT_S:g} s"
    except (OSError, EOFError) as exc:  # no system bus to connect to
        why = f"no D-Bus system bus: {getattr(exc, 'strerror', None) or exc}"
    except BleakError as exc:  # BlueZ not running, or no adapter
        why = str(exc) or type(exc).__name__
    else:
        return
    raise BluetoothError(f"no system Bluetooth found (BlueZ: {why}); {OTHER_RADIOS}")


class Radio:
    """The hub's radio; an async context manager that makes bleak scanners and clients."""

    def __init__(self, spec: str, *, state_dir: Path) -> None:
        self.spec = check_ble_spec(spec)
        self.state_dir = state_dir
        self.host: BumbleHost | None = None
        self.emulator: Emulator | None = None
        self._virtual_radio: VirtualRadio | None = None
        self._stack = contextlib.AsyncExitStack()
        self.connect_lock = asyncio.Lock()
        """Held while a connection is being made: one radio makes one connection at a time."""

    @classmethod
    def on_virtual_radio(cls, radio: VirtualRadio, *, state_dir: Path) -> Radio:
        """A radio on an existing in-process virtual radio (tests, the demo)."""
        instance = cls(VIRTUAL, state_dir=state_dir)
        instance._virtual_radio = radio
        return instance

    async def __aenter__(self) -> Radio:
        try:
            if self.spec == VIRTUAL:
                radio = self._virtual_radio
                if radio is None:
                    emulator = Emulator(Scenario.preset("hip_thrust"), seed=1, bar_velocity=True)
                    self.emulator = await self._stack.enter_async_context(emulator)
                    radio = emulator.radio
                controller = radio.new_controller("hub")
                # Off the link on exit, as a hub that leaves goes out of range: a later
                # hub with the same address must not share the air with a ghost.
                self._stack.callback(radio.release, controller)
                host = BumbleHost.on_controller(controller, state_dir=self.state_dir)
                self.host = await self._stack.enter_async_context(host)
            elif self.spec != NATIVE:
                host = await BumbleHost.open(self.spec, state_dir=self.state_dir)
                self.host = await self._stack.enter_async_context(host)
            else:
                await _check_system_bluetooth()
        except BleakError as exc:
            await self._stack.aclose()
            raise BluetoothError(str(exc)) from exc
        except BaseException:  # the state directory, a cancellation: nothing left running
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def scanner(
        self,
        detection_callback: AdvertisementDataCallback | None = None,
        service_uuids: list[str] | None = None,
    ) -> BleakScanner:
        """Return a scanner on this radio."""
        if self.host is None:
            return BleakScanner(detection_callback, service_uuids)
        return BleakScanner(
            detection_callback, service_uuids, backend=BumbleScanner, host=self.host
        )

    def client(
        self,
        device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[BleakClient], None] | None = None,
        timeout: float = 10.0,
    ) -> BleakClient:
        """Return a client for one sensor on this radio."""
        kwargs: dict[str, Any] = {"timeout": timeout}
        if self.host is not None:
            kwargs.update(backend=BumbleClient, host=self.host)
        return BleakClient(device, disconnected_callback, **kwargs)

    async def is_bonded(self, address: str) -> bool | None:
        """Whether this radio holds a bond with ``address`` (None: the OS keeps that to itself)."""
        if self.host is None:
            return None
        return await self.host.is_bonded(address)

    async def forget_bond(self, address: str) -> None:
        """Delete the bond with a sensor."""
        if self.host is not None:
            await self.host.forget(address)
            return
        try:
            await self.client(address).unpair()
        except BleakError as exc:
            raise BluetoothError(f"could not remove the bond with {address}: {exc}") from exc
