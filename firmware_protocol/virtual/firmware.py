"""The reference firmware: one virtual sensor as a Bumble GATT peripheral.

A :class:`VirtualSensor` behaves as the real firmware must (PROTOCOL.md): it
advertises who it is, accepts one connection at a time, bonds with LE Secure
Connections but only in pairing mode (until its first bond, after its button is pressed,
or within a window after power-on), and serves data, status and control point only over
an encrypted link.
Its sampler runs from power-on at the configured rate, as a real IMU's FIFO does; while
streaming, every batch becomes a data frame with the next sequence number whether or
not it can be delivered, so a hub can account for exactly what it missed.

The samples themselves come from a :class:`SampleSource` (the motion and sensor error
models in this package); the sensor adds only what firmware adds: its own drifting
clock, batching, quantised frames, offsets zeroed by CALIBRATE, and a draining battery.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
from bumble import att, data_types, gatt, pairing
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device

from firmware_protocol import gatt as uuids
from firmware_protocol._errors import MalformedFrameError
from firmware_protocol.advertising import COMPANY_ID, AdvertisingFlags, SensorAdvertisement
from firmware_protocol.control import (
    Calibrate,
    CalibrationKind,
    Command,
    GetConfig,
    Identify,
    Response,
    SensorConfig,
    SetConfig,
    StartStreaming,
    Status,
    StopStreaming,
    TimeSync,
    TimeSyncResult,
    UnknownCommand,
    command_header,
    decode_command,
)
from firmware_protocol.frames import (
    BarDataFrame,
    ImuDataFrame,
    SensorKind,
    StatusFlags,
    StatusFrame,
    samples_per_frame,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S: Final = 0.05
"""A partial batch waits at most this long before it is sent (PROTOCOL.md, "Batching")."""
AHEAD_S: Final = 0.5
"""While streaming, samples are computed this far ahead, in one call of the source.

The motion and error models cost about a millisecond per call and microseconds per
sample, so one call per half second instead of one per frame is what lets one process
carry tens of sensors. Sample times follow from the tick count alone, so the samples are
those the same models give batch by batch; only when they are computed differs.
"""
IDLE_BATCH_S: Final = 0.5
"""A sensor no central is connected to (and not streaming) samples in batches this long."""
STOP_WAIT_S: Final = 0.25
STOP_ATTEMPTS: Final = 40
"""Leaving, the firmware's tasks are cancelled again every STOP_WAIT_S until they stop."""
PAIRING_BUTTON_S: Final = 60.0
"""How long a press of the button keeps a sensor in pairing mode (or until it bonds)."""
ORPHAN_STREAM_TIMEOUT_S: Final = 30.0
"""Streaming with no hub connected stops after this long, to save the battery."""
ADVERTISING_INTERVAL_MS: Final = 100.0
"""Fast advertising, as wearables use while they wait for a hub (quick discovery)."""
CALIBRATION_WINDOW_S: Final = 0.5
COMMAND_QUEUE_SIZE: Final = 16
ATT_ERROR_COMMANDS_BUSY: Final = 0x80
"""ATT application error for a control-point write while 16 commands await answers."""
_GYRO_STILL_COUNTS: Final = 60.0
"""Largest gyro standard deviation (counts) that still counts as lying still."""
_US: Final = 1_000_000


class SampleSource(Protocol):
    """Where a sensor's readings come from: true times in, raw frame columns out."""

    def measure(self, t: npt.NDArray[np.float64], config: SensorConfig) -> npt.NDArray[Any]:
        """Return samples at true times ``t`` (s).

        IMU: int16 counts (n, 6) at the configured ranges; bar: float (n, 2), m and m/s.
        """
        ...


@dataclass(frozen=True, slots=True)
class SensorProfile:
    """Who a virtual sensor is and how its hardware deviates from ideal."""

    address: str
    """Static random address, e.g. ``F1:00:00:00:00:01`` (top two bits set)."""
    kind: SensorKind
    serial: str
    name: str = ""
    clock_drift_ppm: float = 0.0
    """How fast the sensor's crystal runs against true time (±50 ppm is typical)."""
    clock_offset_us: int = 0
    """Sensor clock reading at power-on."""
    battery_pct: float = 100.0
    drain_pct_per_hour: float = 8.0
    """Battery drain while streaming; a quarter of it while idle."""
    firmware_revision: str = "1.0.0"

    @property
    def display_name(self) -> str:
        """The advertised local name."""
        if self.name:
            return self.name
        prefix = "SH-IMU" if self.kind is SensorKind.IMU else "SH-LPT"
        return f"{prefix} {self.serial[-4:]}"


@dataclass
class SensorCounters:
    """What the sensor knows about its own output; tests compare the hub's view with it."""

    frames_sent: int = 0
    samples_sent: int = 0
    frames_undelivered: int = 0
    samples_undelivered: int = 0
    commands: int = 0
    command_errors: int = 0
    commands_dropped: int = 0
    connections: int = 0
    pairings: int = 0
    """Bonds made (a reconnect that reuses a bond makes none)."""
    pairings_refused: int = 0
    """Pairing requests refused because the sensor was not in pairing mode."""
    frames_corrupted: int = 0
    """Frames sent deliberately undecodable (CORRUPT, TRUNCATED); not in ``frames_sent``."""
    samples_corrupted: int = 0
    frames_reordered: int = 0
    """Frames sent after the frame that followed them (REORDER); in ``frames_sent`` too."""
    samples_reordered: int = 0
    frames_duplicated: int = 0
    """Extra copies sent (DUPLICATE); not in ``frames_sent``."""


class Fault(enum.Enum):
    """Misbehaviour a test can switch on, as real sensors misbehave."""

    SILENT = "silent"
    """Keeps the link up but sends no data frames (and counts them undelivered)."""
    CORRUPT = "corrupt"
    """Sends frames whose header is damaged (the sample count byte inverted)."""
    TRUNCATED = "truncated"
    """Sends frames cut short, their last sample incomplete."""
    REORDER = "reorder"
    """Holds a frame back and sends it just after the frame that follows it."""
    DUPLICATE = "duplicate"
    """Sends frames twice in a row, as a link-layer retransmission gone wrong does."""


@dataclass
class _Stream:
    rate_hz: int
    accel_range_g: int
    gyro_range_dps: int
    streaming: bool = False
    seq: int = 0
    next_sample_tick: int = 0
    """Index of the next sample on the sensor clock, counted from power-on."""
    ahead: npt.NDArray[Any] | None = None
    """Samples computed ahead, from ``next_sample_tick`` on, at the rate and ranges in force."""
    last_sampled_s: float | None = None
    """True time (s since power-on) of the last sample computed; the next one comes after."""
    orphaned_since: float | None = None
    recent: deque[npt.NDArray[Any]] = field(default_factory=lambda: deque(maxlen=64))


class _PairingModeDelegate(pairing.PairingDelegate):
    """Just Works pairing that goes ahead only while the sensor is in pairing mode.

    A sensor bonded to one hub and out of pairing mode answers a new pairing request
    with "pairing not supported"; a hub that holds a bond encrypts with it instead and
    is never asked.
    """

    def __init__(self, sensor: VirtualSensor) -> None:
        super().__init__()
        self._sensor = sensor

    async def accept(self) -> bool:
        """Go on with a pairing request?"""
        return self._sensor._accept_pairing()


class VirtualSensor:
    """A sensor's firmware on a Bumble :class:`~bumble.device.Device`; an async context manager.

    ``clock`` returns true time in seconds (monotonic); ``scenario_time`` maps it to the
    motion model's time axis.
    """

    def __init__(
        self,
        profile: SensorProfile,
        device: Device,
        source: SampleSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        scenario_start: float | None = None,
        pairing_window_s: float = 0.0,
    ) -> None:
        if not pairing_window_s >= 0:
            raise ValueError(f"pairing_window_s = {pairing_window_s}: give 0 or more seconds")
        self.profile = profile
        self.device = device
        self.counters = SensorCounters()
        self.faults: set[Fault] = set()
        self.fault_every = 1
        """A fault that mangles frames (all but SILENT) touches one frame in this many."""
        self._fault_tick = 0
        self._held: tuple[Connection, bytes, int] | None = None
        self._clock_jump_us = 0
        self._source = source
        self._clock = clock
        self._boot = clock()
        self._scenario_start = self._boot if scenario_start is None else scenario_start
        self._battery = profile.battery_pct
        self._identify_until = 0.0
        self._clipping = False
        self._calibrated = False
        self._gyro_offset = np.zeros(3)
        self._position_offset = 0.0
        self._bonded = False
        self._pairing_until = self._boot + pairing_window_s
        """Pairing mode by the button (or the window after power-on) lasts until then."""
        self._advertising_stale = asyncio.Event()
        """Set when what the sensor advertises changed: pairing mode after a bond or the
        button, so a hub that looks at once sees it (else within a second)."""
        self._connection: Connection | None = None
        self._dropping: Connection | None = None
        self._commands: asyncio.Queue[tuple[Connection, bytes]] = asyncio.Queue(COMMAND_QUEUE_SIZE)
        kind = profile.kind
        self._stream = (
            _Stream(rate_hz=200, accel_range_g=16, gyro_range_dps=2000)
            if kind is SensorKind.IMU
            else _Stream(rate_hz=100, accel_range_g=0, gyro_range_dps=0)
        )
        self._runner: asyncio.Task[None] | None = None
        self._children: list[asyncio.Task[None]] = []
        self._build_gatt()

    # Lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> VirtualSensor:
        device = self.device
        delegate = _PairingModeDelegate(self)
        device.pairing_config_factory = lambda _connection: pairing.PairingConfig(
            sc=True,
            mitm=False,
            bonding=True,
            identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
            delegate=delegate,
        )
        device.on(device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        # A bond kept from before power-on ends pairing mode, as a first bond does.
        self._bonded = device.keystore is not None and bool(await device.keystore.get_all())
        await self._advertise()
        self._runner = asyncio.create_task(self._run(), name=f"{self.profile.display_name}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        runner.cancel()
        for _ in range(STOP_ATTEMPTS):
            done, _pending = await asyncio.wait({runner}, timeout=STOP_WAIT_S)
            if done:
                break
            # A task can take a cancellation for its own (a send on a link that is going
            # down ends in CancelledError too) and carry on: cancel what is left again.
            for child in self._children:
                child.cancel()
        else:
            log.warning("%s: tasks did not stop", self.profile.display_name)
        if runner.done() and not runner.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                runner.result()
        # A peer that already left the air never confirms a disconnect: bounded waits.
        if self._connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._connection.disconnect()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.device.stop_advertising()

    async def _run(self) -> None:
        name = self.profile.display_name
        async with asyncio.TaskGroup() as tasks:
            self._children = [
                tasks.create_task(self._sample_loop(), name=f"{name} sampler"),
                tasks.create_task(self._command_loop(), name=f"{name} control point"),
                tasks.create_task(self._housekeeping_loop(), name=f"{name} housekeeping"),
            ]

    # Public state and fault injection ---------------------------------------------------

    @property
    def address(self) -> str:
        """The sensor's address as scanners see it."""
        return self.profile.address

    @property
    def config(self) -> SensorConfig:
        """The configuration in force, as GET_CONFIG reports it."""
        stream = self._stream
        return SensorConfig(
            kind=self.profile.kind,
            rate_hz=stream.rate_hz,
            accel_range_g=stream.accel_range_g,
            gyro_range_dps=stream.gyro_range_dps,
            samples_per_frame=self._batch_size(),
            streaming=stream.streaming,
        )

    @property
    def connected(self) -> bool:
        """Whether a central is connected now."""
        return self._connection is not None

    @property
    def pairing_mode(self) -> bool:
        """Whether the sensor accepts a new bond now (PROTOCOL.md, "Security").

        It does while it has no bond, for :data:`PAIRING_BUTTON_S` after its button is
        pressed, and through the window after power-on it was given; a bond made ends
        the button's pairing mode.
        """
        return not self._bonded or self._clock() < self._pairing_until

    def press_button(self) -> None:
        """Press the sensor's button: pairing mode for PAIRING_BUTTON_S, advertised within 1 s."""
        self._pairing_until = max(self._pairing_until, self._clock() + PAIRING_BUTTON_S)
        self._advertising_stale.set()
        log.info("%s: in pairing mode for %g s", self.profile.display_name, PAIRING_BUTTON_S)

    async def reset_bonds(self) -> None:
        """Forget every bond, as a sensor reset to its factory state does, and drop the link.

        A hub that was bonded then finds its bond gone: the sensor refuses its keys
        until it pairs again (the sensor is in pairing mode, having no bond).
        """
        keystore = self.device.keystore
        if keystore is not None:
            await keystore.delete_all()
        self._bonded = False
        self._advertising_stale.set()
        await self.drop_link()

    def sensor_time_us(self, at: float | None = None) -> int:
        """The sensor clock (a wrapping 32-bit µs counter) at true time ``at`` (default: now)."""
        elapsed = (self._clock() if at is None else at) - self._boot
        ticks = round(elapsed * _US * (1 + self.profile.clock_drift_ppm * 1e-6))
        return (self.profile.clock_offset_us + self._clock_jump_us + ticks) & 0xFFFFFFFF

    def jump_clock(self, delta_us: int) -> None:
        """Make the sensor clock jump by ``delta_us`` (either way), as a glitching RTC does.

        Sampling goes on undisturbed: only the timestamps in frames and TIME_SYNC
        answers move, from the next frame on.
        """
        self._clock_jump_us += delta_us

    async def drop_link(self) -> None:
        """Drop the connection as a radio fade would (the sensor keeps sampling).

        From this moment no frame is sent on the dying link; frames already handed to the
        radio are let through first. So the sensor's count of undelivered frames is
        exact, which is what tests hold the hub's loss accounting to.
        """
        connection = self._connection
        if connection is None:
            return
        self._dropping = connection
        try:
            host_connection = self.device.host.connections.get(connection.handle)
            if host_connection is not None:
                with contextlib.suppress(ValueError):
                    async with asyncio.timeout(1.0):
                        await host_connection.acl_packet_queue.drain(connection.handle)
            await connection.disconnect()
        finally:
            self._dropping = None

    def status_frame(self) -> StatusFrame:
        """The status the sensor reports now."""
        flags = StatusFlags(0)
        if self._stream.streaming:
            flags |= StatusFlags.STREAMING
        if self._battery < 15:
            flags |= StatusFlags.LOW_BATTERY
        if self._calibrated:
            flags |= StatusFlags.CALIBRATED
        if self._clock() < self._identify_until:
            flags |= StatusFlags.IDENTIFYING
        if self._clipping:
            flags |= StatusFlags.CLIPPING
        if self.pairing_mode:
            flags |= StatusFlags.PAIRING_MODE
        return StatusFrame(
            battery_pct=max(0, min(100, round(self._battery))),
            temperature_c=31.5,
            flags=flags,
        )

    @property
    def identifying(self) -> bool:
        """Whether the LED is blinking for IDENTIFY now."""
        return self._clock() < self._identify_until

    # GATT -------------------------------------------------------------------------------

    def _build_gatt(self) -> None:
        encrypted_cccd = (
            att.Attribute.READABLE
            | att.Attribute.WRITEABLE
            | att.Attribute.READ_REQUIRES_ENCRYPTION
            | att.Attribute.WRITE_REQUIRES_ENCRYPTION
        )
        self._data_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuids.DATA_CHAR_UUID,
            gatt.Characteristic.Properties.NOTIFY,
            att.Attribute.READ_REQUIRES_ENCRYPTION,
            b"",
        )
        self._status_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuids.STATUS_CHAR_UUID,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            att.Attribute.READABLE | att.Attribute.READ_REQUIRES_ENCRYPTION,
            gatt.CharacteristicValue(read=lambda _conn: bytes(self.status_frame())),
        )
        self._control_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuids.CONTROL_POINT_UUID,
            gatt.Characteristic.Properties.WRITE | gatt.Characteristic.Properties.INDICATE,
            att.Attribute.WRITEABLE | att.Attribute.WRITE_REQUIRES_ENCRYPTION,
            gatt.CharacteristicValue(write=self._on_control_write),
        )
        server = self.device.gatt_server
        # Bumble's own CCCDs need no encryption, so a stranger could subscribe and be
        # notified: each subscribable characteristic gets a CCCD that demands it.
        for characteristic in (self._data_char, self._status_char, self._control_char):
            characteristic.descriptors = [
                gatt.Descriptor(
                    gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                    encrypted_cccd,
                    att.AttributeValueV2(
                        read=lambda bearer, c=characteristic: server.read_cccd(bearer, c),
                        write=lambda bearer, value, c=characteristic: server.write_cccd(
                            bearer, c, value
                        ),
                    ),
                )
            ]
        kind = self.profile.kind
        model = "SH-IMU1" if kind is SensorKind.IMU else "SH-LPT1"
        info = {
            uuids.MANUFACTURER_NAME_UUID: "sensorhub",
            uuids.MODEL_NUMBER_UUID: model,
            uuids.SERIAL_NUMBER_UUID: self.profile.serial,
            uuids.HARDWARE_REVISION_UUID: "virtual-1",
            uuids.FIRMWARE_REVISION_UUID: self.profile.firmware_revision,
        }
        self._battery_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuids.BATTERY_LEVEL_UUID,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            att.Attribute.READABLE,
            gatt.CharacteristicValue(read=lambda _conn: bytes([round(self._battery)])),
        )
        self.device.add_services(
            [
                gatt.Service(
                    uuids.SERVICE_UUID, [self._data_char, self._status_char, self._control_char]
                ),
                gatt.Service(
                    uuids.DEVICE_INFORMATION_SERVICE_UUID,
                    [
                        gatt.Characteristic(
                            uuid,
                            gatt.Characteristic.Properties.READ,
                            att.Attribute.READABLE,
                            value.encode(),
                        )
                        for uuid, value in info.items()
                    ],
                ),
                gatt.Service(uuids.BATTERY_SERVICE_UUID, [self._battery_char]),
            ]
        )

    def _advertisement(self) -> SensorAdvertisement:
        flags = AdvertisingFlags(0)
        if self.pairing_mode:
            flags |= AdvertisingFlags.PAIRING_MODE
        if self._stream.streaming:
            flags |= AdvertisingFlags.STREAMING
        if self._battery < 15:
            flags |= AdvertisingFlags.LOW_BATTERY
        return SensorAdvertisement(self.profile.kind, max(0, round(self._battery)), flags)

    def _advertising_data(self) -> bytes:
        return bytes(
            AdvertisingData(
                [
                    data_types.Flags(
                        AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE
                        | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
                    ),
                    data_types.CompleteLocalName(self.profile.display_name),
                    data_types.ManufacturerSpecificData(COMPANY_ID, bytes(self._advertisement())),
                ]
            )
        )

    async def _advertise(self) -> None:
        if self._connection is not None:
            return
        scan_response = bytes(
            AdvertisingData(
                [data_types.IncompleteListOf128BitServiceUUIDs([UUID(uuids.SERVICE_UUID)])]
            )
        )
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        await self.device.start_advertising(
            advertising_data=self._advertising_data(),
            scan_response_data=scan_response,
            auto_restart=True,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS,
        )

    # Connections ------------------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        self.counters.connections += 1
        self._stream.orphaned_since = None
        connection.on(connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection())
        connection.on(connection.EVENT_PAIRING, lambda _keys: self._on_paired())
        log.debug("%s: connected to %s", self.profile.display_name, connection.peer_address)

    def _on_disconnection(self) -> None:
        self._connection = None
        self._stream.orphaned_since = self._clock()
        self._advertising_stale.set()  # advertising again, as it is now (a bond ends pairing)
        log.debug("%s: disconnected", self.profile.display_name)

    def _on_paired(self) -> None:
        self._bonded = True
        self._pairing_until = self._clock()  # bonded: the button's pairing mode is over
        self.counters.pairings += 1

    def _accept_pairing(self) -> bool:
        """Whether to go on with a pairing request: only in pairing mode."""
        if self.pairing_mode:
            return True
        self.counters.pairings_refused += 1
        log.info(
            "%s: refused to pair with %s: not in pairing mode (press the button)",
            self.profile.display_name,
            self._connection.peer_address if self._connection is not None else "?",
        )
        return False

    def _encrypted_connection(self) -> Connection | None:
        connection = self._connection
        if connection is None or not connection.is_encrypted:
            return None
        return connection

    # Sampling and streaming -------------------------------------------------------------

    def _batch_size(self) -> int:
        connection = self._connection
        mtu = connection.att_mtu if connection is not None else uuids.DEFAULT_ATT_MTU
        return samples_per_frame(self.profile.kind, mtu)

    async def _sample_loop(self) -> None:
        stream = self._stream
        stream.next_sample_tick = int(np.ceil((self._clock() - self._boot) * stream.rate_hz))
        while True:
            per_frame = max(1, self._batch_size())
            # Frames leave as soon as they are full; a sensor that sends none wakes less.
            period = FLUSH_INTERVAL_S
            if stream.streaming:
                period = min(FLUSH_INTERVAL_S, per_frame / stream.rate_hz)
            await asyncio.sleep(period)
            now = self._clock()
            first = stream.next_sample_tick
            last = int(np.floor((now - self._boot) * stream.rate_hz * (1 + self._drift())))
            if last < first:
                continue
            idle = not stream.streaming and self._connection is None
            if idle and last - first + 1 < IDLE_BATCH_S * stream.rate_hz:
                continue
            ticks = np.arange(first, last + 1)
            samples = self._apply_offsets(self._due_samples(first, last))
            stream.next_sample_tick = last + 1
            stream.recent.append(samples)
            if stream.streaming:
                await self._stream_samples(ticks, samples, per_frame)

    def _due_samples(self, first: int, last: int) -> npt.NDArray[Any]:
        """Return the samples of ticks ``first`` to ``last``, the next ones due.

        While streaming they come from a block computed AHEAD_S ahead: no SET_CONFIG
        (refused while streaming) can change them before they are due.
        """
        stream = self._stream
        ahead = stream.ahead
        wanted = last - first + 1
        if ahead is None or len(ahead) < wanted:
            have = 0 if ahead is None else len(ahead)
            until = last + (round(AHEAD_S * stream.rate_hz) if stream.streaming else 0)
            computed = self._measure(np.arange(first + have, until + 1))
            ahead = computed if ahead is None else np.concatenate([ahead, computed])
        stream.ahead = ahead[wanted:]
        return ahead[:wanted]

    def _measure(self, ticks: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        stream = self._stream
        since_boot = ticks / stream.rate_hz / (1 + self._drift())
        stream.last_sampled_s = float(since_boot[-1])
        return self._source.measure(self._boot + since_boot - self._scenario_start, self.config)

    def _drift(self) -> float:
        return self.profile.clock_drift_ppm * 1e-6

    def _apply_offsets(self, samples: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.profile.kind is SensorKind.IMU:
            if self._calibrated:
                corrected = samples.astype(np.int32)
                corrected[:, 3:6] -= np.rint(self._gyro_offset).astype(np.int32)
                samples = np.clip(corrected, -32768, 32767).astype(np.int16)
            self._clipping = self._clipping or bool(
                np.any((samples == 32767) | (samples == -32768))
            )
            return samples
        shifted = np.array(samples, dtype=np.float64)
        shifted[:, 0] -= self._position_offset
        return shifted

    async def _stream_samples(
        self, ticks: npt.NDArray[np.int64], samples: npt.NDArray[Any], per_frame: int
    ) -> None:
        stream = self._stream
        interval_us = round(_US / stream.rate_hz)
        for start in range(0, len(ticks), per_frame):
            chunk = samples[start : start + per_frame]
            tick = int(ticks[start])
            frame = self._frame(stream.seq, self._tick_timestamp_us(tick), interval_us, chunk)
            stream.seq = (stream.seq + 1) & 0xFFFF
            await self._deliver(frame, len(chunk))

    def _tick_timestamp_us(self, tick: int) -> int:
        return (
            self.profile.clock_offset_us
            + self._clock_jump_us
            + round(tick * _US / self._stream.rate_hz)
        ) & 0xFFFFFFFF

    def _frame(
        self, seq: int, timestamp_us: int, interval_us: int, chunk: npt.NDArray[Any]
    ) -> ImuDataFrame | BarDataFrame:
        if self.profile.kind is SensorKind.IMU:
            return ImuDataFrame(
                seq=seq,
                timestamp_us=timestamp_us,
                interval_us=interval_us,
                samples=chunk,
                accel_range_g=self._stream.accel_range_g,
                gyro_range_dps=self._stream.gyro_range_dps,
            )
        return BarDataFrame.from_si(
            seq=seq,
            timestamp_us=timestamp_us,
            interval_us=interval_us,
            position=chunk[:, 0],
            velocity=chunk[:, 1],
        )

    async def _deliver(self, frame: ImuDataFrame | BarDataFrame, count: int) -> None:
        connection = self._encrypted_connection()
        dropping = connection is not None and connection is self._dropping
        held, self._held = self._held, None
        if held is not None and held[0] is not connection:
            # A frame held back for REORDER never reaches a link that has gone since.
            self._count_undelivered(held[2])
            held = None
        if connection is None or Fault.SILENT in self.faults or dropping:
            self._count_undelivered(count)
            if held is not None:
                self._count_undelivered(held[2])
            return
        data = bytes(frame)
        self._fault_tick += 1
        mangling = self._fault_tick % max(1, self.fault_every) == 0
        if held is None and mangling and Fault.REORDER in self.faults:
            self._held = (connection, data, count)
            return
        if mangling and Fault.CORRUPT in self.faults:
            damaged = bytearray(data)
            damaged[10] ^= 0xFF  # the sample count: the length no longer matches it
            await self._notify_counted(connection, bytes(damaged), count, corrupted=True)
        elif mangling and Fault.TRUNCATED in self.faults:
            await self._notify_counted(connection, data[:-1], count, corrupted=True)
        else:
            sent = await self._notify_counted(connection, data, count)
            if sent and mangling and Fault.DUPLICATE in self.faults:
                with contextlib.suppress(Exception):
                    await self.device.notify_subscriber(connection, self._data_char, data)
                    self.counters.frames_duplicated += 1
        if held is not None and await self._notify_counted(connection, held[1], held[2]):
            self.counters.frames_reordered += 1
            self.counters.samples_reordered += held[2]

    async def _notify_counted(
        self, connection: Connection, data: bytes, count: int, *, corrupted: bool = False
    ) -> bool:
        """Notify one data frame and count it; whether it reached a subscribed hub."""
        delivered = False
        try:
            await self.device.notify_subscriber(connection, self._data_char, data)
            delivered = self._subscribed(connection, self._data_char)
        except Exception:  # a link that died mid-send loses the frame
            log.debug("%s: notification failed", self.profile.display_name, exc_info=True)
        if not delivered:
            self._count_undelivered(count)
        elif corrupted:
            self.counters.frames_corrupted += 1
            self.counters.samples_corrupted += count
        else:
            self.counters.frames_sent += 1
            self.counters.samples_sent += count
        return delivered

    def _count_undelivered(self, count: int) -> None:
        self.counters.frames_undelivered += 1
        self.counters.samples_undelivered += count

    def _subscribed(
        self, connection: Connection, characteristic: gatt.Characteristic[bytes]
    ) -> bool:
        cccds = self.device.gatt_server.subscribers.get(connection, {})
        cccd = cccds.get(characteristic.handle)
        return bool(cccd and cccd[0] & 0x01)

    # Control point ----------------------------------------------------------------------

    def _on_control_write(self, connection: Connection, value: bytes) -> None:
        try:
            self._commands.put_nowait((connection, bytes(value)))
        except asyncio.QueueFull:
            # A hub that floods the control point has its excess writes refused, so it
            # learns at once; the sensor never falls behind or goes quiet.
            self.counters.commands_dropped += 1
            raise att.ATT_Error(error_code=ATT_ERROR_COMMANDS_BUSY) from None

    async def _command_loop(self) -> None:
        while True:
            connection, data = await self._commands.get()
            self.counters.commands += 1
            response = await self._handle(data)
            if not response.ok:
                self.counters.command_errors += 1
            if connection.is_encrypted:
                with contextlib.suppress(Exception):
                    await self.device.indicate_subscriber(
                        connection, self._control_char, bytes(response)
                    )

    async def _handle(self, data: bytes) -> Response:
        try:
            command = decode_command(data) if data[:2] == b"\x01\x20" else None
        except MalformedFrameError:
            command = None
        if command is None:
            opcode, token = command_header(data)
            return Response(opcode=opcode, token=token, status=Status.MALFORMED)
        if isinstance(command, UnknownCommand):
            return command.response()
        try:
            return await self._execute(command)
        except Exception:  # firmware answers, whatever went wrong
            log.exception("%s: command %r failed", self.profile.display_name, command)
            return command.response(Status.INTERNAL_ERROR)

    async def _execute(self, command: Command) -> Response:  # noqa: PLR0911 - one case per opcode
        stream = self._stream
        match command:
            case StartStreaming():
                if self._batch_size() < 1:
                    return command.response(Status.MTU_TOO_SMALL)
                stream.streaming = True
                return command.response()
            case StopStreaming():
                stream.streaming = False
                return command.response()
            case SetConfig():
                if stream.streaming:
                    return command.response(Status.INVALID_STATE)
                if command.problem_for(self.profile.kind) is not None:
                    return command.response(Status.INVALID_PARAMETER)
                self._reconfigure(command)
                return command.response(payload=bytes(self.config))
            case GetConfig():
                return command.response(payload=bytes(self.config))
            case Identify():
                self._identify_until = self._clock() + command.duration_ms / 1000
                log.info("%s: blinking (identify)", self.profile.display_name)
                return command.response()
            case Calibrate():
                return command.response(await self._calibrate(command.kind))
            case TimeSync():
                return command.response(payload=bytes(TimeSyncResult(self.sensor_time_us())))
        return command.response(Status.UNKNOWN_COMMAND)

    def _reconfigure(self, command: SetConfig) -> None:
        stream = self._stream
        stream.recent.clear()
        wanted = (command.rate_hz, command.accel_range_g, command.gyro_range_dps)
        if wanted == (stream.rate_hz, stream.accel_range_g, stream.gyro_range_dps):
            return  # the samples already taken stand
        stream.rate_hz, stream.accel_range_g, stream.gyro_range_dps = wanted
        stream.ahead = None
        scale = stream.rate_hz * (1 + self._drift())
        tick = int(np.ceil((self._clock() - self._boot) * scale))
        # The new configuration applies after the samples already taken, which streaming
        # takes up to AHEAD_S ahead: the models only move forward in time.
        if stream.last_sampled_s is not None:
            tick = max(tick, int(np.floor(stream.last_sampled_s * scale)) + 1)
            while tick / stream.rate_hz / (1 + self._drift()) <= stream.last_sampled_s:
                tick += 1
        stream.next_sample_tick = tick

    async def _calibrate(self, kind: int) -> Status:
        stream = self._stream
        if kind == CalibrationKind.GYRO_BIAS and self.profile.kind is SensorKind.IMU:
            stream.recent.clear()
            await asyncio.sleep(CALIBRATION_WINDOW_S)
            if not stream.recent:
                return Status.INTERNAL_ERROR
            window = np.concatenate(list(stream.recent)).astype(np.float64)
            gyro = window[:, 3:6]
            if float(np.max(np.std(gyro, axis=0))) > _GYRO_STILL_COUNTS:
                return Status.INVALID_STATE
            self._gyro_offset = self._gyro_offset + gyro.mean(axis=0)
            self._calibrated = True
            return Status.OK
        if kind == CalibrationKind.ZERO_POSITION and self.profile.kind is SensorKind.BAR_VELOCITY:
            if not stream.recent:
                return Status.INVALID_STATE
            self._position_offset += float(stream.recent[-1][-1, 0])
            self._calibrated = True
            return Status.OK
        return Status.INVALID_PARAMETER

    # Housekeeping -----------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        last = self._clock()
        last_advertised = self._advertisement()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advertising_stale.wait(), 1.0)
            self._advertising_stale.clear()
            now = self._clock()
            stream = self._stream
            rate = self.profile.drain_pct_per_hour * (1.0 if stream.streaming else 0.25)
            self._battery = max(0.0, self._battery - rate * (now - last) / 3600)
            last = now
            orphaned = stream.orphaned_since
            if (
                stream.streaming
                and orphaned is not None
                and now - orphaned > ORPHAN_STREAM_TIMEOUT_S
            ):
                stream.streaming = False
            connection = self._encrypted_connection()
            if connection is not None:
                with contextlib.suppress(Exception):
                    await self.device.notify_subscriber(
                        connection, self._status_char, bytes(self.status_frame())
                    )
                self._clipping = False
            advertisement = self._advertisement()
            stale = advertisement != last_advertised or not self.device.is_advertising
            if stale and self._connection is None:
                # Also the safety net: a sensor nobody is connected to always advertises.
                last_advertised = advertisement
                with contextlib.suppress(Exception):
                    await self._advertise()
