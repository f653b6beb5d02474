"""One sensor link: connect, configure, sync clocks, stream, and survive every disconnect.

A :class:`SensorLink` is an async context manager that keeps one registered sensor
streaming for as long as it runs. Notifications go straight into a bounded queue
(drop-oldest: the freshest data matters most to a live view; every drop is counted and
shows up as an exact gap); :meth:`SensorLink.batches` decodes them, accounts for loss
from sequence numbers and sensor timestamps, and stamps every sample with hub time.

Reconnecting follows what Home Assistant's bleak-retry-connector learned: wait to hear
the sensor advertise before connecting, back off by what went wrong (a sensor that is
away is simply waited for; a failed attempt retries soon, then slower; a refused bond
waits long and says to pair again), and never give up while the link is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shlex
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from firmware_protocol import (
    BarDataFrame,
    FirmwareProtocolError,
    GetConfig,
    ImuDataFrame,
    SensorConfig,
    SetConfig,
    StartStreaming,
    StatusFrame,
    StopStreaming,
    TimeSync,
    TimeSyncResult,
    decode,
)
from firmware_protocol import gatt as uuids
from sensorhub.ble._tasks import cancelled_by_us
from sensorhub.ble.accounting import FrameVerdict, StreamAccounting
from sensorhub.ble.clock import SensorClock
from sensorhub.ble.control import ControlPoint
from sensorhub.ble.errors import bluetooth_error, bluetooth_errors
from sensorhub.ble.radio import Radio
from sensorhub.errors import BluetoothError, BondLostError, RadioLostError, SensorNotFoundError
from sensorhub.registry import RegisteredSensor
from sensorhub.stream import LinkState, SensorBatch, SensorStatus

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S: Final = 3.0
CONNECT_TIMEOUT_S: Final = 10.0
TIME_SYNC_INTERVAL_S: Final = 5.0
RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 10.0
"""A link that failed is tried again after 0.5 s, then 1, 2, 4, 8 and 10 s (±20 %)."""
BOND_LOST_RETRY_S: Final = 30.0
"""A sensor that lost our bond is tried this often: only pairing it again brings it back."""
SILENCE_TIMEOUT_S: Final = 3.0
"""Streaming, but no data for this long: the sensor is stuck; drop the link and reconnect."""
MIN_STEP_S: Final = 1e-6
"""Smallest step between two samples' hub times (s); see :meth:`SensorLink._monotonic`."""
RAW_QUEUE_FRAMES: Final = 1024
"""About 20 s of frames at 800 Hz: room for a slow consumer to catch up."""


_RESTART_MARKER: Final = b""
"""Queued where a fresh stream begins (no data frame is ever empty)."""
CLOCK_FIT_WINDOW: Final = 64
"""Time syncs the drift fit spans: about five minutes at one sync every 5 s."""


@dataclass
class _Backoff:
    """Delay before the next attempt, by what went wrong (seconds): 0.5 s doubling to
    :data:`RETRY_MAX_S`, ±20 %; :data:`BOND_LOST_RETRY_S` once the bond is gone."""

    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self, error: BaseException) -> float:
        self.attempt += 1
        if isinstance(error, BondLostError):
            return BOND_LOST_RETRY_S
        base = min(RETRY_MAX_S, RETRY_FIRST_S * float(2 ** min(self.attempt - 1, 5)))
        return base * self.rng.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


class SensorLink:
    """Keeps one registered sensor connected and streaming; an async context manager."""

    def __init__(
        self,
        radio: Radio,
        sensor: RegisteredSensor,
        *,
        rate_hz: int = 200,
        accel_range_g: int = 16,
        gyro_range_dps: int = 2000,
        on_status: Callable[[SensorStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.radio = radio
        self.sensor = sensor
        self.address = sensor.address
        self._wanted = SetConfig(0, rate_hz, accel_range_g, gyro_range_dps)
        if sensor.kind == "bar_velocity":
            self._wanted = SetConfig(0, min(rate_hz, 1000) if rate_hz >= 50 else 100, 0, 0)
        self._on_status = on_status
        self._clock = clock
        self.state = LinkState.SEARCHING
        self.accounting = StreamAccounting()
        self.sensor_clock = SensorClock(window=CLOCK_FIT_WINDOW)
        self.frames_dropped = 0
        self.corrupt_frames = 0
        self.reconnects = 0
        self.battery_pct: int | None = None
        self.rssi: int | None = None
        self.last_error: str | None = None
        self._raw: deque[tuple[bytes, float]] = deque(maxlen=RAW_QUEUE_FRAMES)
        self._raw_ready = asyncio.Event()
        self._last_data_at = clock()
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=64)
        self._follows: tuple[int, int] | None = None
        """(seq, unwrapped sensor µs) that the next frame has when it follows on exactly."""
        self._jump_us = 0
        """A sensor clock jump not yet seen by a TIME_SYNC, taken out of frame times."""
        self._last_t = -np.inf
        """Hub time of the last sample handed out (they only go forward)."""
        self._runner: asyncio.Task[None] | None = None
        self._backoff = _Backoff()
        self._bond_lost = False

    async def __aenter__(self) -> SensorLink:
        self._runner = asyncio.create_task(self._run(), name=f"link {self.address}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self._set_state(LinkState.STOPPED)
        self._raw_ready.set()

    # Status -----------------------------------------------------------------------------

    def status(self) -> SensorStatus:
        """The link's state now."""
        window = self._rate_window
        rate = 0.0
        if len(window) >= 2 and window[-1][0] > window[0][0]:
            rate = sum(n for _, n in list(window)[1:]) / (window[-1][0] - window[0][0])
        counters = self.accounting
        return SensorStatus(
            address=self.address,
            role=self.sensor.role,
            athlete=self.sensor.athlete,
            state=self.state,
            battery_pct=self.battery_pct,
            rssi=self.rssi,
            sample_rate_hz=round(rate, 1),
            frames_received=counters.frames_received,
            samples_received=counters.samples_received,
            frames_lost=counters.frames_lost,
            samples_lost=counters.samples_lost,
            frames_dropped_by_hub=self.frames_dropped,
            corrupt_frames=self.corrupt_frames,
            reconnects=self.reconnects,
            clock_drift_ppm=self.sensor_clock.drift_ppm if self.sensor_clock.synced else None,
            last_error=self.last_error,
        )

    def _set_state(self, state: LinkState) -> None:
        if state is not self.state:
            self.state = state
            self._emit_status()

    def _emit_status(self) -> None:
        if self._on_status is not None:
            self._on_status(self.status())

    # Data -------------------------------------------------------------------------------

    def _on_data(self, _characteristic: object, data: bytearray) -> None:
        # The notification callback only queues: decoding and accounting happen in batches().
        if len(self._raw) == self._raw.maxlen:
            self.frames_dropped += 1  # drop-oldest: the deque pushes the oldest out
        self._last_data_at = self._clock()
        self._raw.append((bytes(data), self._last_data_at))
        self._raw_ready.set()

    async def batches(self) -> AsyncIterator[SensorBatch]:
        """Yield every accepted data frame as hub-timed samples, until the link stops."""
        while self.state is not LinkState.STOPPED:
            if not self._raw:
                self._raw_ready.clear()
                await self._raw_ready.wait()
                continue
            data, received_at = self._raw.popleft()
            if data is _RESTART_MARKER:
                self.accounting.expect_restart()
                continue
            batch = self._decode(data, received_at)
            if batch is not None:
                yield batch

    def _decode(self, data: bytes, received_at: float = 0.0) -> SensorBatch | None:
        try:
            frame = decode(data)
        except FirmwareProtocolError:
            self.corrupt_frames += 1
            return None
        if not isinstance(frame, ImuDataFrame | BarDataFrame):
            self.corrupt_frames += 1  # a data characteristic carries nothing else
            return None
        seen = self.accounting.observe(
            frame.seq, frame.timestamp_us, frame.interval_us, frame.count
        )
        if seen.verdict in {FrameVerdict.DUPLICATE, FrameVerdict.LATE}:
            return None
        start_us = self.sensor_clock.unwrap(frame.timestamp_us)
        if seen.verdict is FrameVerdict.RESTART:
            self._notice_clock_jump(frame.seq, start_us)
        self._follows = ((frame.seq + 1) & 0xFFFF, start_us + frame.count * frame.interval_us)
        t = self._monotonic(
            self.sensor_clock.to_hub(start_us - self._jump_us + frame.sample_offsets_us)
        )
        self._rate_window.append((float(t[-1]), frame.count))
        if isinstance(frame, ImuDataFrame):
            return SensorBatch(
                self.address,
                t,
                accel=frame.accel,
                gyro=frame.gyro,
                lost_before=seen.lost_samples,
                frame=data,
                received_at=received_at,
            )
        return SensorBatch(
            self.address,
            t,
            position=frame.position,
            velocity=frame.velocity,
            lost_before=seen.lost_samples,
            frame=data,
            received_at=received_at,
        )

    def _notice_clock_jump(self, seq: int, start_us: int) -> None:
        """Keep frame times continuous across a jump of the sensor clock.

        A frame that follows on by ``seq`` but not in sensor time means the sensor's
        clock jumped (or the stream was stopped and started). Until the next TIME_SYNC
        sees it, the clock fit maps the new readings as far off as the jump, seconds of
        wrong sample times for analysis, so whichever reading (as stamped, or where the
        last frame ended) lands nearer to now on the hub is taken. A stopped and
        restarted stream is mapped right as stamped and keeps it.
        """
        follows = self._follows
        if follows is None or seq != follows[0] or not self.sensor_clock.synced:
            return
        continuous_us = start_us - follows[1] + self._jump_us
        now = self._clock()
        as_stamped, as_continued = self.sensor_clock.to_hub(
            [start_us - self._jump_us, start_us - continuous_us]
        )
        if abs(as_continued - now) < abs(as_stamped - now):
            self._jump_us = continuous_us
            log.info("%s: sensor clock jumped %+d µs", self.address, start_us - follows[1])

    def _monotonic(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Hub times that only go forward, whatever a clock refit did.

        A time sync that refits the drift can move the mapping back by a few milliseconds
        between two frames, and the analysis needs strictly increasing times: a frame that
        would start at or before the last sample handed out is moved just past it, whole
        (its own spacing, and so the rate, stays true).
        """
        if len(t) == 0:
            return t
        if t[0] <= self._last_t:
            t = t + (self._last_t - float(t[0]) + MIN_STEP_S)
        self._last_t = float(t[-1])
        return t

    # Connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.radio.while_ready(self._attempt, name=f"link {self.address} attempt")
                self.last_error = "link lost"
                delay = 0.0
            except RadioLostError as exc:
                # Not the sensor's doing: no back-off, and nothing to log per link (the
                # radio says it once); the next attempt waits until the radio is back.
                self.last_error = str(exc)
                delay = 0.0
            except (
                BleakError,
                BluetoothError,
                TimeoutError,
                EOFError,
                OSError,  # the OS's Bluetooth (BlueZ, its D-Bus) went away: retry
                FirmwareProtocolError,  # a sensor answering garbage: retry, never stop
            ) as exc:
                error: BaseException = exc
                if isinstance(exc, BleakError):  # a lost bond, say, from its type
                    error = bluetooth_error(exc, self.address, f"streaming from {self.address}")
                self._report_bond(error)
                self.last_error = str(error) or type(error).__name__
                delay = self._backoff.next(error)
                log.info("%s: %s; retrying in %.1f s", self.address, self.last_error, delay)
            self.reconnects += 1
            if self.state is LinkState.BACKING_OFF:
                self._emit_status()  # the session's end said so already; now with why
            self._set_state(LinkState.BACKING_OFF)
            await asyncio.sleep(delay)

    def _report_bond(self, error: BaseException) -> None:
        """Say once, as a warning, that the sensor's bond is gone and how to bring it back."""
        lost = isinstance(error, BondLostError)
        if lost and not self._bond_lost:
            sensor = self.sensor
            log.warning(
                "%s; then: sensorhub pair %s --role %s --athlete %s",
                error,
                sensor.address,
                sensor.role,
                shlex.quote(sensor.athlete),
            )
        self._bond_lost = lost

    async def _attempt(self) -> None:
        """Find the sensor and stream from it until the link ends."""
        device = await self._find()
        await self._session(device)

    async def _find(self) -> BLEDevice:
        """Wait until the sensor advertises (it is away until then: no point connecting)."""
        self._set_state(LinkState.SEARCHING)
        found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()
        wanted = self.address.upper()

        def on_advertisement(device: BLEDevice, advertisement: AdvertisementData) -> None:
            if device.address.upper() == wanted and not found.done():
                self.rssi = advertisement.rssi
                found.set_result(device)

        scanner = self.radio.scanner(on_advertisement)
        await scanner.start()
        try:
            return await found
        finally:
            await scanner.stop()

    async def _session(self, device: BLEDevice) -> None:
        self._set_state(LinkState.CONNECTING)
        disconnected = asyncio.Event()
        client = self.radio.client(
            device, disconnected_callback=lambda _c: disconnected.set(), timeout=CONNECT_TIMEOUT_S
        )
        async with self.radio.connect_lock:
            # Refused keys: BondLostError; anything else: out of range, off, or taken.
            doing = f"connecting to {self.address}"
            with bluetooth_errors(self.address, doing, SensorNotFoundError):
                await client.connect()
        control = ControlPoint(client, self.address, clock=self._clock)
        try:
            await self._start_streaming(client, control)
            self._backoff.reset()
            self._bond_lost = False
            self._set_state(LinkState.STREAMING)
            await self._supervise(control, disconnected)
        finally:
            control.cancel_all()
            # Not streaming from here on, though the disconnect can take its time (up
            # to CONNECT_TIMEOUT_S on a radio that stopped answering).
            self._set_state(LinkState.BACKING_OFF)
            await disconnect(client)

    async def _start_streaming(self, client: BleakClient, control: ControlPoint) -> None:
        await control.start()
        await client.start_notify(uuids.STATUS_CHAR_UUID, self._on_status_notification)
        response = await control.send(GetConfig(0), timeout=COMMAND_TIMEOUT_S)
        config = SensorConfig.decode(response.payload)
        wanted = self._wanted
        matches = (config.rate_hz, config.accel_range_g, config.gyro_range_dps) == (
            wanted.rate_hz,
            wanted.accel_range_g,
            wanted.gyro_range_dps,
        )
        resume = config.streaming and matches
        if config.streaming and not matches:
            await control.send(StopStreaming(0), timeout=COMMAND_TIMEOUT_S)
        if not matches:
            await control.send(wanted, timeout=COMMAND_TIMEOUT_S)
        for _ in range(3):
            await self._time_sync(control)
        status = StatusFrame.decode(bytes(await client.read_gatt_char(uuids.STATUS_CHAR_UUID)))
        self.battery_pct = status.battery_pct
        await client.start_notify(uuids.DATA_CHAR_UUID, self._on_data)
        self._last_data_at = self._clock()
        if not resume:
            # A fresh stream: a jump in sensor time before its first frame is not loss.
            # The marker goes through the frame queue, so frames of the old stream still
            # waiting there are accounted for before it.
            self._raw.append((_RESTART_MARKER, self._clock()))
            await control.send(StartStreaming(0), timeout=COMMAND_TIMEOUT_S)

    async def _supervise(self, control: ControlPoint, disconnected: asyncio.Event) -> None:
        last_sync = self._clock()
        while not disconnected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await disconnected.wait()
            now = self._clock()
            if disconnected.is_set():
                return
            if now - self._last_data_at > SILENCE_TIMEOUT_S:
                raise BluetoothError(f"{self.address} went silent; reconnecting")
            if now - last_sync >= TIME_SYNC_INTERVAL_S:
                await self._time_sync(control)
                last_sync = now
                self._emit_status()

    def _on_status_notification(self, _characteristic: object, data: bytearray) -> None:
        with contextlib.suppress(FirmwareProtocolError):
            self.battery_pct = StatusFrame.decode(bytes(data)).battery_pct

    async def _time_sync(self, control: ControlPoint) -> None:
        sent = self._clock()
        response = await control.send(TimeSync(0), timeout=COMMAND_TIMEOUT_S)
        sensor_us = TimeSyncResult.decode(response.payload).sensor_time_us
        self.sensor_clock.add_sync(sent, control.last_received_at, sensor_us)
        self._jump_us = 0  # the fit has seen the sensor clock as it reads now


async def disconnect(client: BleakClient) -> None:
    """Drop the connection; one already gone is no error, but a stop still stops.

    A session that ended because its link dropped (no exception on the way) disconnects
    here; a stop that lands now must end the link's task, not be taken for the dying
    link's noise and leave the link reconnecting after its hub has stopped.
    """
    try:
        await client.disconnect()
    except BleakError:
        pass
    except asyncio.CancelledError:
        if cancelled_by_us():
            raise
