"""SensorClock against simulated sensors whose true clock is known.

The simulated TIME_SYNC has a random round trip of 5-40 ms, and the sensor reads its
clock at a uniformly random point inside it, so the midpoint is off by up to 20 ms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensorhub.ble.clock import SensorClock
from sensorhub.errors import ConfigError, SensorhubError

U32 = 1 << 32
BOOT_S = 1000.0  # hub monotonic time of the sensor's power-on


class SimulatedSensor:
    """A sensor clock with drift and an offset, read at true (hub) times."""

    def __init__(self, drift_ppm: float, offset_us: int) -> None:
        self.drift_ppm = drift_ppm
        self.offset_us = offset_us

    def continuous_us(self, hub_s: np.ndarray | float) -> np.ndarray:
        ticks = np.rint((np.asarray(hub_s) - BOOT_S) * 1e6 * (1 + self.drift_ppm * 1e-6))
        return self.offset_us + ticks.astype(np.int64)

    def read(self, hub_s: float) -> int:
        return int(self.continuous_us(hub_s)) % U32


def sync_at(
    clock: SensorClock, sensor: SimulatedSensor, t: float, rng: np.random.Generator
) -> None:
    rtt = rng.uniform(0.005, 0.040)
    sent = t - rng.uniform(0.0, 1.0) * rtt
    clock.add_sync(sent, sent + rtt, sensor.read(t))


def mapping_error_s(clock: SensorClock, sensor: SimulatedSensor, start: float, end: float) -> float:
    """Worst error of to_hub over [start, end], through unwrap as a hub would call it."""
    hub_times = np.linspace(start, end, 200)
    unwrapped = np.array([clock.unwrap(sensor.read(t)) for t in hub_times], dtype=np.int64)
    return float(np.max(np.abs(clock.to_hub(unwrapped) - hub_times)))


def test_unwrap_across_a_wrap_and_a_small_step_back() -> None:
    clock = SensorClock()
    assert clock.unwrap(U32 - 10) == U32 - 10  # the first reading maps to itself
    assert clock.unwrap(5) == U32 + 5
    assert clock.unwrap(U32 - 3) == U32 - 3  # a little back, across the wrap again
    assert clock.unwrap(100) == U32 + 100
    assert clock.unwrap(1 << 30) == U32 + (1 << 30)
    assert clock.unwrap(0) == U32  # backward: a difference of 2**32 - 2**30 is ≥ 2**31


def test_unwrap_many_wraps_forward() -> None:
    clock = SensorClock()
    step = 3 * (1 << 29)  # under 2**31, so every step is forward
    readings = [(k * step) % U32 for k in range(40)]
    assert [clock.unwrap(r) for r in readings] == [k * step for k in range(40)]


@pytest.mark.parametrize("drift_ppm", [45.0, -50.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tracks_offset_and_drift(drift_ppm: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # start ~30 s before the wrap so the syncs cross it
    sensor = SimulatedSensor(drift_ppm, U32 - int(rng.uniform(20e6, 40e6)))
    clock = SensorClock(window=160)
    assert not clock.synced
    t0 = BOOT_S + 0.5
    times = t0 + 2.0 * np.arange(301)  # 600 s of syncs every 2 s
    for k, t in enumerate(times):
        sync_at(clock, sensor, float(t), rng)
        if k == 0:
            assert clock.synced
            assert clock.drift_ppm == 0.0  # one sync: offset only
        if t - t0 == 60.0:
            # a minute in, the mapping is good to a few ms but the drift is not settled
            assert mapping_error_s(clock, sensor, t0, float(t)) < 3e-3
    assert clock.jumps == 0
    assert 0.005 <= clock.rtt_s < 0.010
    assert clock.drift_ppm == pytest.approx(drift_ppm, abs=5.0)
    assert mapping_error_s(clock, sensor, float(times[-1]) - 300, float(times[-1])) < 2e-3


def test_default_window_after_a_minute_of_syncs() -> None:
    rng = np.random.default_rng(7)
    sensor = SimulatedSensor(45.0, U32 - 30_000_000)
    clock = SensorClock()
    t0 = BOOT_S + 0.5
    for k in range(31):
        sync_at(clock, sensor, t0 + 2.0 * k, rng)
    assert mapping_error_s(clock, sensor, t0, t0 + 60.0) < 6e-3
    assert abs(clock.drift_ppm - 45.0) < 100  # too short a span to pin the drift


def test_offset_only_until_syncs_span_a_second() -> None:
    sensor = SimulatedSensor(50.0, 123)
    clock = SensorClock()
    for t in (BOOT_S + 1.0, BOOT_S + 1.3, BOOT_S + 1.6):
        clock.add_sync(t - 0.001, t + 0.001, sensor.read(t))
    assert clock.drift_ppm == 0.0
    clock.add_sync(BOOT_S + 2.2 - 0.001, BOOT_S + 2.2 + 0.001, sensor.read(BOOT_S + 2.2))
    assert clock.drift_ppm != 0.0


def test_clock_jump_is_detected_and_the_mapping_recovers() -> None:
    rng = np.random.default_rng(11)
    sensor = SimulatedSensor(-50.0, 2_000_000_000)
    clock = SensorClock(window=64)
    t = BOOT_S + 5.0
    for _ in range(60):
        sync_at(clock, sensor, t, rng)
        t += 2.0
    drift_before = clock.drift_ppm
    sensor.offset_us += 3_000_000  # the sensor clock jumps 3 s ahead
    sync_at(clock, sensor, t, rng)
    assert clock.jumps == 1
    assert clock.drift_ppm == drift_before  # the rate survives; the offset restarts
    assert mapping_error_s(clock, sensor, t, t + 1.0) < 0.021
    for _ in range(5):
        t += 2.0
        sync_at(clock, sensor, t, rng)
    assert clock.jumps == 1
    assert mapping_error_s(clock, sensor, t - 10.0, t) < 0.01


def test_reboot_resets_the_clock_and_counts_as_a_jump() -> None:
    sensor = SimulatedSensor(10.0, 3_000_000_000)
    clock = SensorClock()
    for t in np.arange(BOOT_S + 1, BOOT_S + 40, 2.0):
        clock.add_sync(t - 0.004, t + 0.004, sensor.read(float(t)))
    sensor.offset_us = -int(50 * 1e6)  # rebooted at hub time BOOT_S + 50: reads 0 there
    clock.add_sync(BOOT_S + 60.0, BOOT_S + 60.01, sensor.read(BOOT_S + 60.005))
    assert clock.jumps == 1
    assert mapping_error_s(clock, sensor, BOOT_S + 60, BOOT_S + 61) < 0.006


def test_long_round_trip_widens_the_jump_threshold() -> None:
    sensor = SimulatedSensor(0.0, 0)
    clock = SensorClock(jump_threshold_s=0.05)
    clock.add_sync(BOOT_S + 1.0, BOOT_S + 1.002, sensor.read(BOOT_S + 1.001))
    # read 0.2 s into a 0.5 s round trip: the midpoint is 0.05 s off, within the round trip
    clock.add_sync(BOOT_S + 2.0, BOOT_S + 2.5, sensor.read(BOOT_S + 2.2))
    assert clock.jumps == 0
    # the narrow sync still pins the line
    assert mapping_error_s(clock, sensor, BOOT_S + 1, BOOT_S + 3) < 0.002


def test_to_hub_is_vectorised() -> None:
    sensor = SimulatedSensor(20.0, U32 - 1_000_000)
    clock = SensorClock()
    for t in np.arange(BOOT_S + 0.5, BOOT_S + 30, 2.0):
        clock.add_sync(t - 0.001, t + 0.001, sensor.read(float(t)))
    stamps = sensor.continuous_us(np.linspace(BOOT_S, BOOT_S + 30, 10_000))
    hub = clock.to_hub(stamps)
    assert hub.shape == (10_000,)
    assert hub.dtype == np.float64
    assert np.all(np.diff(hub) > 0)
    assert np.max(np.abs(hub - np.linspace(BOOT_S, BOOT_S + 30, 10_000))) < 0.002
    assert clock.to_hub(stamps.reshape(100, 100)).shape == (100, 100)


def test_to_hub_before_any_sync_raises() -> None:
    clock = SensorClock()
    assert clock.rtt_s == math.inf
    with pytest.raises(SensorhubError, match="no TIME_SYNC yet"):
        clock.to_hub(np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 1}, "window=1"),
        ({"window": 2.5}, "window=2.5"),
        ({"jump_threshold_s": 0.0}, "jump_threshold_s=0.0"),
        ({"jump_threshold_s": math.nan}, "jump_threshold_s=nan"),
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SensorClock(**kwargs)  # type: ignore[arg-type]


def test_bad_sync_raises() -> None:
    clock = SensorClock()
    with pytest.raises(ConfigError, match="before it was sent"):
        clock.add_sync(2.0, 1.0, 0)
    with pytest.raises(ConfigError, match="u32"):
        clock.add_sync(1.0, 2.0, U32)
