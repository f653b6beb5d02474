"""The reference firmware, checked from outside by a plain Bumble central over the virtual radio."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest
from bumble import gatt
from bumble.att import ATT_Error, ErrorCode

from firmware_protocol import (
    BarDataFrame,
    Calibrate,
    CalibrationKind,
    Frame,
    GetConfig,
    Identify,
    ImuDataFrame,
    SensorConfig,
    SetConfig,
    StartStreaming,
    Status,
    StatusFlags,
    StatusFrame,
    StopStreaming,
    TimeSync,
    TimeSyncResult,
)
from firmware_protocol import gatt as uuids
from firmware_protocol.frames import SensorKind
from firmware_protocol.virtual.central import ReferenceCentral, SensorLink
from firmware_protocol.virtual.emulator import Emulator, ImuSource
from firmware_protocol.virtual.firmware import (
    AHEAD_S,
    IDLE_BATCH_S,
    Fault,
    SensorProfile,
    VirtualSensor,
)
from firmware_protocol.virtual.imu_model import ImuSimulator
from firmware_protocol.virtual.scenario import Scenario

HUB_ADDRESS = "C0:DE:00:00:00:01"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(Scenario.preset("hip_thrust"), seed=7, bar_velocity=True) as running:
        yield running


@pytest.fixture
async def central(emulator: Emulator) -> AsyncIterator[ReferenceCentral]:
    device = emulator.radio.new_device(name="hub", address=HUB_ADDRESS)
    async with ReferenceCentral(device) as running:
        yield running


def imu_address(emulator: Emulator, body: str = "bar") -> str:
    return next(
        s.firmware.address
        for s in emulator.sensors
        if s.body == body and s.firmware.profile.kind is SensorKind.IMU
    )


async def paired_link(central: ReferenceCentral, address: str) -> SensorLink:
    link = await central.connect(address)
    await link.pair()
    await link.enable_commands()
    return link


async def streaming_link(central: ReferenceCentral, address: str) -> tuple[SensorLink, Collector]:
    """A paired link streaming at the sensor's configuration, and what arrives on it."""
    link = await paired_link(central, address)
    frames = Collector()
    await link.subscribe_data(frames)
    async with asyncio.timeout(5):
        assert (await link.command(StartStreaming(0))).ok
    return link, frames


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def __call__(self, frame: Frame) -> None:
        self.frames.append(frame)

    @property
    def data(self) -> list[ImuDataFrame | BarDataFrame]:
        return [f for f in self.frames if isinstance(f, ImuDataFrame | BarDataFrame)]


async def test_scan_finds_every_sensor_by_its_advertising_data(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    found = await central.scan(0.6)
    expected = {s.firmware.address: s.firmware.profile.kind for s in emulator.sensors}
    assert {address: s.advertisement.kind for address, s in found.items()} == expected
    for sighting in found.values():
        assert sighting.advertisement.pairing_mode
        assert 0 < sighting.advertisement.battery_pct <= 100
        assert sighting.name is not None
        assert sighting.name.startswith(("SH-IMU", "SH-LPT"))


async def test_unpaired_central_gets_no_data_and_no_commands(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    link = await central.connect(imu_address(emulator))
    frames = Collector()
    with pytest.raises(ATT_Error) as refused:
        await link.subscribe_data(frames)
    assert refused.value.error_code == ErrorCode.INSUFFICIENT_ENCRYPTION
    with pytest.raises(ATT_Error):
        await link.enable_commands()
    with pytest.raises(ATT_Error):
        await link.read_status()
    # Even with streaming switched on behind its back, nothing reaches the stranger.
    emulator.sensors[0].firmware._stream.streaming = True
    await asyncio.sleep(0.5)
    assert frames.frames == []
    assert emulator.sensors[0].firmware.counters.samples_sent == 0


async def test_paired_stream_arrives_at_the_configured_rate_without_gaps(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    address = imu_address(emulator)
    link = await paired_link(central, address)
    frames = Collector()
    await link.subscribe_data(frames)
    async with asyncio.timeout(5):
        configured = await link.command(SetConfig(0, 400, 8, 1000))
        assert configured.status == Status.OK
        config = SensorConfig.decode(configured.payload)
        assert (config.rate_hz, config.accel_range_g, config.gyro_range_dps) == (400, 8, 1000)
        assert (await link.command(StartStreaming(0))).ok
    seconds = 3.0
    await asyncio.sleep(seconds)
    data = frames.data
    seqs = [f.seq for f in data]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    stamps = np.array([f.timestamp_us for f in data], dtype=np.int64)
    counts = np.array([f.count for f in data])
    # Each frame starts exactly where the previous one ended on the sensor clock.
    assert np.array_equal(np.diff(stamps), counts[:-1] * 2500)
    assert all(f.accel_range_g == 8 and f.gyro_range_dps == 1000 for f in data)
    received = counts.sum()
    assert 0.85 * 400 * seconds <= received <= 1.1 * 400 * seconds
    # A bar sensor at rest or lifting: gravity is there, in sensor units.
    accel = np.concatenate([f.accel for f in data])
    assert 9.0 < float(np.median(np.linalg.norm(accel, axis=1))) < 10.6
    firmware = emulator.sensors[0].firmware
    assert firmware.counters.samples_undelivered == 0
    assert max(counts) <= config.samples_per_frame


class RecordingSource:
    """An IMU source that keeps the times it was asked for and what it answered."""

    def __init__(self, source: ImuSource) -> None:
        self.source = source
        self.times: list[np.ndarray] = []
        self.answers: list[np.ndarray] = []

    def measure(self, t: np.ndarray, config: SensorConfig) -> np.ndarray:
        self.times.append(t.copy())
        self.answers.append(self.source.measure(t, config))
        return self.answers[-1]


async def test_streamed_samples_are_the_models_own_computed_ahead_in_few_calls(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    def simulator() -> ImuSimulator:
        return ImuSimulator(emulator.trajectory, "bar", rng=np.random.default_rng(40))

    source = RecordingSource(ImuSource(simulator()))
    profile = SensorProfile(
        address="F3:00:00:00:00:01", kind=SensorKind.IMU, serial="AHEAD-0001", clock_drift_ppm=37.0
    )
    device = emulator.radio.new_device(name=profile.display_name, address=profile.address)
    frames = Collector()
    seconds = 2.0
    async with VirtualSensor(profile, device, source, scenario_start=emulator.started_at):
        link = await paired_link(central, profile.address)
        await link.subscribe_data(frames)
        async with asyncio.timeout(5):
            assert (await link.command(StartStreaming(0))).ok
        calls_before = len(source.times)
        await asyncio.sleep(seconds)
        calls_streaming = len(source.times) - calls_before
    # One call of the models per AHEAD_S of streaming, not one per 50 ms frame.
    assert calls_streaming <= seconds / AHEAD_S + 2
    # The times asked for are the sensor's tick grid, without a gap or a repeat ...
    times = np.concatenate(source.times)
    assert np.allclose(np.diff(times), 1 / 200 / (1 + 37e-6), rtol=0, atol=1e-9)
    # ... and the samples are what the same models give for those times in one batch.
    computed = np.concatenate(source.answers)
    accel, gyro = simulator().measure(times, accel_range_g=16, gyro_range_dps=2000, odr_hz=200)
    assert np.array_equal(computed, np.hstack([accel, gyro]))
    streamed = np.concatenate([f.samples for f in frames.data])
    assert len(streamed) >= 0.85 * 200 * seconds
    found = [
        i
        for i in range(len(computed) - len(streamed) + 1)
        if np.array_equal(computed[i : i + len(streamed)], streamed)
    ]
    assert len(found) == 1


async def test_a_sensor_nobody_is_connected_to_samples_in_few_calls(emulator: Emulator) -> None:
    source = RecordingSource(
        ImuSource(ImuSimulator(emulator.trajectory, "pelvis", rng=np.random.default_rng(41)))
    )
    profile = SensorProfile(address="F3:00:00:00:00:02", kind=SensorKind.IMU, serial="IDLE-0001")
    device = emulator.radio.new_device(name=profile.display_name, address=profile.address)
    seconds = 1.6
    async with VirtualSensor(profile, device, source, scenario_start=emulator.started_at):
        await asyncio.sleep(seconds)
    # Its MTU fits one sample a frame: it used to sample every 5 ms, 200 calls a second.
    assert 1 <= len(source.times) <= seconds / IDLE_BATCH_S + 1
    times = np.concatenate(source.times)
    assert np.allclose(np.diff(times), 1 / 200, rtol=0, atol=1e-9)


async def test_a_new_rate_right_after_streaming_applies_after_the_samples_taken_ahead(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    link, frames = await streaming_link(central, emulator.sensors[0].firmware.address)
    await asyncio.sleep(0.6)
    async with asyncio.timeout(5):
        assert (await link.command(StopStreaming(0))).ok
        assert (await link.command(SetConfig(0, 100, 8, 1000))).ok
        assert (await link.command(StartStreaming(0))).ok
    seconds = 1.5
    await asyncio.sleep(seconds)
    after = [f for f in frames.data if f.interval_us == 10_000]
    assert after, "no frame at the new rate"
    stamps = np.array([f.timestamp_us for f in after], dtype=np.int64)
    counts = np.array([f.count for f in after])
    assert np.array_equal(np.diff(stamps), counts[:-1] * 10_000)
    # At most AHEAD_S of the old rate's samples stood between the change and these.
    assert counts.sum() >= 0.85 * 100 * (seconds - AHEAD_S)


async def test_every_command_gets_a_response_with_a_status(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    link = await paired_link(central, imu_address(emulator))
    async with asyncio.timeout(10):
        assert (await link.command(Identify(0, 500))).ok
        status = await link.read_status()
        assert isinstance(status, StatusFrame)
        assert StatusFlags.IDENTIFYING in status.flags
        assert (await link.command(SetConfig(0, 333, 8, 1000))).status == Status.INVALID_PARAMETER
        unknown = await link.send_raw(bytes.fromhex("0120ee05"))
        assert (unknown.opcode, unknown.token, unknown.status) == (0xEE, 5, Status.UNKNOWN_COMMAND)
        short = await link.send_raw(bytes.fromhex("01200307"))  # SET_CONFIG without parameters
        assert (short.opcode, short.token, short.status) == (3, 7, Status.MALFORMED)
        garbage = await link.send_raw(b"\xff")
        assert garbage.status == Status.MALFORMED
        assert (await link.command(StartStreaming(0))).ok
        busy = await link.command(SetConfig(0, 100, 4, 500))
        assert busy.status == Status.INVALID_STATE
        assert (await link.command(StopStreaming(0))).ok
        config = SensorConfig.decode((await link.command(GetConfig(0))).payload)
        assert config.kind is SensorKind.IMU
        assert not config.streaming


async def test_time_sync_reads_a_clock_that_drifts_as_configured(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    firmware = emulator.sensors[0].firmware
    link = await paired_link(central, firmware.address)
    loop = asyncio.get_running_loop()
    readings = []
    async with asyncio.timeout(10):
        for _ in range(2):
            sent = loop.time()
            response = await link.command(TimeSync(0))
            readings.append((sent, TimeSyncResult.decode(response.payload).sensor_time_us))
            await asyncio.sleep(1.0)
    (t0, s0), (t1, s1) = readings
    elapsed_sensor = ((s1 - s0) & 0xFFFFFFFF) / 1e6
    assert elapsed_sensor == pytest.approx(t1 - t0, abs=0.05)
    assert firmware.sensor_time_us(t1) - firmware.sensor_time_us(t0) == pytest.approx(
        (t1 - t0) * 1e6 * (1 + firmware.profile.clock_drift_ppm * 1e-6), abs=2
    )


async def test_bond_is_reused_on_reconnect(emulator: Emulator, central: ReferenceCentral) -> None:
    address = imu_address(emulator)
    link = await paired_link(central, address)
    await link.disconnect()
    await asyncio.sleep(0.2)
    again = await central.connect(address)
    await again.encrypt()  # the stored key, no new pairing
    assert again.connection.is_encrypted
    await again.enable_commands()
    async with asyncio.timeout(5):
        assert (await again.command(GetConfig(0))).ok


async def test_link_drop_loses_exactly_what_the_sensor_counts_undelivered(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    firmware = emulator.sensors[0].firmware
    link, frames = await streaming_link(central, firmware.address)
    await asyncio.sleep(0.6)
    await firmware.drop_link()
    await asyncio.sleep(0.5)
    link = await central.connect(firmware.address)
    await link.encrypt()
    await link.subscribe_data(frames)
    await asyncio.sleep(0.6)
    # Stop before counting: frames the sensor has counted sent may still be on the radio
    # (seen under load), and the response comes after every one of them on the link.
    await link.enable_commands()
    async with asyncio.timeout(5):
        assert (await link.command(StopStreaming(0))).ok
    data = frames.data
    gap_frames = sum((b.seq - a.seq - 1) & 0xFFFF for a, b in itertools.pairwise(data))
    lost_samples = sum(
        ((b.timestamp_us - a.timestamp_us) & 0xFFFFFFFF) // a.interval_us - a.count
        for a, b in itertools.pairwise(data)
    )
    counters = firmware.counters
    assert gap_frames > 0
    assert gap_frames == counters.frames_undelivered
    assert lost_samples == counters.samples_undelivered
    assert sum(f.count for f in data) == counters.samples_sent


async def test_silent_sensor_keeps_counting(emulator: Emulator, central: ReferenceCentral) -> None:
    firmware = emulator.sensors[0].firmware
    _link, frames = await streaming_link(central, firmware.address)
    await asyncio.sleep(0.3)
    firmware.faults.add(Fault.SILENT)
    before = len(frames.data)
    await asyncio.sleep(0.4)
    assert len(frames.data) <= before + 1
    firmware.faults.discard(Fault.SILENT)
    await asyncio.sleep(0.3)
    data = frames.data
    gap = sum((b.seq - a.seq - 1) & 0xFFFF for a, b in itertools.pairwise(data))
    assert gap == firmware.counters.frames_undelivered > 0


async def test_mtu_too_small_is_refused_not_silently_broken(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    link = await central.connect(imu_address(emulator), mtu=23)
    await link.pair()
    await link.enable_commands()
    async with asyncio.timeout(5):
        assert (await link.command(StartStreaming(0))).status == Status.MTU_TOO_SMALL


async def test_bar_velocity_sensor_streams_position_and_velocity(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    firmware = next(
        s.firmware for s in emulator.sensors if s.firmware.profile.kind is SensorKind.BAR_VELOCITY
    )
    link = await paired_link(central, firmware.address)
    frames = Collector()
    await link.subscribe_data(frames)
    async with asyncio.timeout(5):
        zero = await link.command(Calibrate(0, CalibrationKind.ZERO_POSITION))
        assert zero.status in {Status.OK, Status.INVALID_STATE}
        wrong = await link.command(Calibrate(0, CalibrationKind.GYRO_BIAS))
        assert wrong.status == Status.INVALID_PARAMETER
        assert (await link.command(SetConfig(0, 500))).ok
        assert (await link.command(StartStreaming(0))).ok
    await asyncio.sleep(1.0)
    data = frames.data
    assert data
    assert all(isinstance(f, BarDataFrame) and f.interval_us == 2000 for f in data)
    position = np.concatenate([f.position for f in data])  # type: ignore[union-attr]
    assert np.all(np.abs(position) < 2.0)


async def test_standard_services_are_readable(
    emulator: Emulator, central: ReferenceCentral
) -> None:
    link = await central.connect(imu_address(emulator))
    await link.peer.discover_services()
    await link.peer.discover_characteristics()
    battery = link.peer.get_characteristics_by_uuid(gatt.UUID(uuids.BATTERY_LEVEL_UUID))
    model = link.peer.get_characteristics_by_uuid(gatt.UUID(uuids.MODEL_NUMBER_UUID))
    assert 0 < (await battery[0].read_value())[0] <= 100
    assert await model[0].read_value() == b"SH-IMU1"
