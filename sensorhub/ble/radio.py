"""Choosing the radio: bleak's native backend, a Bumble transport, or the virtual radio.

Whatever is chosen, the hub gets the same two things: ``BleakScanner`` and
``BleakClient`` objects. Only how they are made differs.

The radio is also watched, because nothing under it says when it has gone: a Bumble
host whose HCI transport closed, or whose controller stalled, just hears nothing and
waits for ever on its next command; BlueZ drops an unplugged adapter without a word
to a scan in progress. The watch notices (the transport's end; a cheap HCI command,
Read BD_ADDR, unanswered for :data:`PROBE_TIMEOUT_S`; BlueZ's adapter gone), marks
the radio :attr:`RadioState.LOST`, ends every link's attempt on it
(:meth:`Radio.while_ready`), and brings it back: a Bumble transport is reopened with
back-off, BlueZ's adapter is waited for. Listeners (the hub status) hear each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementDataCallback
from bleak.exc import BleakError

from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble.bumble_backend import BumbleClient, BumbleHost, BumbleScanner
from sensorhub.ble.spec import NATIVE, VIRTUAL, check_ble_spec
from sensorhub.errors import BluetoothError, RadioLostError

log = logging.getLogger(__name__)

T = TypeVar("T")

SYSTEM_BLUETOOTH_TIMEOUT_S: Final = 5.0
PROBE_EVERY_S: Final = 1.0
"""How often the watch asks a Bumble controller a cheap question (HCI Read BD_ADDR)."""
PROBE_TIMEOUT_S: Final = 2.0
"""A controller that does not answer within this has stalled: the radio is lost. With
:data:`PROBE_EVERY_S`, a stall is noticed within 3 s, as soon as a link's silence watchdog."""
NATIVE_PROBE_EVERY_S: Final = 2.0
"""How often BlueZ is asked whether its adapter is still there (a lookup in its cache)."""
OPEN_TIMEOUT_S: Final = 5.0
"""Opening a Bumble transport and resetting its controller: a stalled one never answers."""
REOPEN_FIRST_S: Final = 0.5
REOPEN_MAX_S: Final = 10.0
"""A lost radio is reopened after 0.5 s, then 1, 2, 4, 8 and 10 s (±20 %), for ever."""
STOP_WAIT_S: Final = 0.25
"""An attempt cut short by a lost radio is cancelled again this often until it ends."""
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
    why = await _system_bluetooth_problem()
    if why is not None:
        raise BluetoothError(f"no system Bluetooth found (BlueZ: {why}); {OTHER_RADIOS}")


async def _system_bluetooth_problem() -> str | None:
    """What keeps bleak from BlueZ's adapter now (None: nothing, or not Linux)."""
    if sys.platform != "linux":
        return None
    from bleak.backends.bluezdbus.manager import get_global_bluez_manager  # noqa: PLC0415

    try:
        async with asyncio.timeout(SYSTEM_BLUETOOTH_TIMEOUT_S):
            manager = await get_global_bluez_manager()
        manager.get_default_adapter()
    except TimeoutError:  # before OSError, of which it is one
        return f"the D-Bus system bus did not answer within {SYSTEM_BLUETOOTH_TIMEOUT_S:g} s"
    except (OSError, EOFError) as exc:  # no system bus to connect to
        return f"no D-Bus system bus: {getattr(exc, 'strerror', None) or exc}"
    except BleakError as exc:  # BlueZ not running, or no adapter
        return str(exc) or type(exc).__name__
    return None


class RadioState(enum.StrEnum):
    """Whether the hub's radio can be used (the hub status's ``radio``)."""

    READY = "ready"
    LOST = "lost"


RadioListener = Callable[["Radio"], None]


class Radio:
    """The hub's radio; an async context manager that makes bleak scanners and clients.

    While it runs, a task named ``radio watch`` notices the radio going away and brings
    it back (see the module docstring); :attr:`state` says where it is.
    """

    def __init__(self, spec: str, *, state_dir: Path) -> None:
        self.spec = check_ble_spec(spec)
        self.state_dir = state_dir
        self.host: BumbleHost | None = None
        self.emulator: Emulator | None = None
        self._virtual_radio: VirtualRadio | None = None
        self._stack = contextlib.AsyncExitStack()
        self.connect_lock = asyncio.Lock()
        """Held while a connection is being made: one radio makes one connection at a time."""
        self.state = RadioState.READY
        self.lost_reason: str | None = None
        """Why the radio is lost, for people (None while it is ready)."""
        self._ready = asyncio.Event()
        self._lost: asyncio.Future[str] | None = None
        """Done, with the reason, when the radio of this ready period is lost."""
        self._listeners: list[RadioListener] = []
        self._rng = random.Random()

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
                self.host = await self._open_host()
                self._stack.push_async_callback(self._close_host)
                self._start_watch()
            else:
                await _check_system_bluetooth()
                if sys.platform == "linux":
                    self._start_watch()
        except BleakError as exc:
            await self._stack.aclose()
            raise BluetoothError(str(exc)) from exc
        except BaseException:  # the state directory, a cancellation: nothing left running
            await self._stack.aclose()
            raise
        self._set_ready()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    # Watching the radio -----------------------------------------------------------------

    def add_listener(self, listener: RadioListener) -> None:
        """Call ``listener(radio)`` whenever :attr:`state` changes."""
        self._listeners.append(listener)

    def remove_listener(self, listener: RadioListener) -> None:
        """Stop calling ``listener``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def while_ready(self, work: Callable[[], Coroutine[Any, Any, T]], *, name: str) -> T:
        """Run ``work()`` once the radio is ready; if the radio is lost first, end it and
        raise :class:`RadioLostError`.

        An attempt on a radio waits in many places (a scan that hears nothing, a GATT
        request, an HCI command never answered); none of them notices that the radio
        itself went, so the attempt is ended from outside.
        """
        await self._ready.wait()
        lost = self._lost
        assert lost is not None
        task = asyncio.create_task(work(), name=name)
        try:
            waits: set[asyncio.Future[Any]] = {task, lost}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _finish(task)
        if lost.done():
            if not task.cancelled():
                task.exception()  # whatever the dying radio made it raise is no news
            raise RadioLostError(f"the radio is lost ({lost.result()})")
        return task.result()

    def _start_watch(self) -> None:
        watch = asyncio.create_task(self._watch(), name="radio watch")

        async def stop() -> None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

        self._stack.push_async_callback(stop)

    async def _watch(self) -> None:
        """Notice the radio going away, say so, bring it back; for as long as the hub runs."""
        while True:
            why = await (self._until_adapter_gone() if self.host is None else self._until_lost())
            self._set_lost(why)
            if self.host is None:
                await self._until_adapter_back()
            else:
                await self._reopen()
            self._set_ready()

    async def _until_lost(self) -> str:
        """Return why the Bumble radio is lost, once it is."""
        host = self.host
        assert host is not None
        closed = host.transport_closed
        while True:
            if closed is None:
                await asyncio.sleep(PROBE_EVERY_S)
            else:
                await asyncio.wait({closed}, timeout=PROBE_EVERY_S)
                if closed.done():
                    if not closed.cancelled():
                        closed.exception()  # its end is the news, not how it ended
                    return "the HCI transport closed"
            try:
                await host.probe(timeout=PROBE_TIMEOUT_S)
            except BleakError as exc:
                return str(exc)

    async def _reopen(self) -> None:
        """Close the lost Bumble transport and open it again, backing off, until it works."""
        lost = self.host
        assert lost is not None
        await lost.abandon()
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                self.host = await self._open_host()
            except BluetoothError as exc:
                delay = min(REOPEN_MAX_S, REOPEN_FIRST_S * 2.0 ** min(attempt - 1, 5))
                delay *= self._rng.uniform(0.8, 1.2)
                if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8 …: not every one
                    log.warning(
                        "radio %s: reopening failed (attempt %d: %s); next in %.1f s",
                        self.spec,
                        attempt,
                        exc,
                        delay,
                    )
                await asyncio.sleep(delay)
            else:
                log.warning(
                    "radio %s: back after %.1f s (%d attempts); the sensors reconnect",
                    self.spec,
                    time.monotonic() - began,
                    attempt,
                )
                return

    async def _open_host(self) -> BumbleHost:
        """Open the Bumble transport and start its controller, within :data:`OPEN_TIMEOUT_S`."""
        host: BumbleHost | None = None
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                host = await BumbleHost.open(self.spec, state_dir=self.state_dir)
                await host.power_on()
        except TimeoutError:
            if host is not None:
                await host.abandon()
            raise BluetoothError(
                f"the Bluetooth controller on {self.spec} did not answer "
                f"within {OPEN_TIMEOUT_S:g} s"
            ) from None
        except BleakError as exc:
            if host is not None:
                await host.abandon()
            raise BluetoothError(str(exc)) from exc
        return host

    async def _close_host(self) -> None:
        host = self.host
        if host is None:
            return
        if self.state is RadioState.LOST:
            await host.abandon()
        else:
            await host.close()

    async def _until_adapter_gone(self) -> str:
        """Return why BlueZ's adapter can no longer be used, once it cannot."""
        while True:
            await asyncio.sleep(NATIVE_PROBE_EVERY_S)
            if (why := await _system_bluetooth_problem()) is not None:
                return f"BlueZ: {why}"

    async def _until_adapter_back(self) -> None:
        """Wait until BlueZ has an adapter again (it reopens the device itself)."""
        while await _system_bluetooth_problem() is not None:  # noqa: ASYNC110 - BlueZ has no event to wait on
            await asyncio.sleep(NATIVE_PROBE_EVERY_S)
        log.warning("radio: BlueZ has an adapter again; the sensors reconnect")

    def _set_ready(self) -> None:
        self.state = RadioState.READY
        self.lost_reason = None
        self._lost = asyncio.get_running_loop().create_future()
        self._ready.set()
        self._tell()

    def _set_lost(self, why: str) -> None:
        log.warning(
            "radio %s lost: %s; every link waits while it is reopened (with back-off)",
            self.spec,
            why,
        )
        self.state = RadioState.LOST
        self.lost_reason = why
        self._ready.clear()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)
        self._tell()

    def _tell(self) -> None:
        for listener in list(self._listeners):
            listener(self)

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


async def _finish(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` until it has ended.

    One cancellation is not always enough: a link's clean-up after it (a disconnect)
    waits on the dead radio in turn, and Bumble's own cancelled requests look alike.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_WAIT_S)
