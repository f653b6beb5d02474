"""The pieces the velocity estimator is built from: turnarounds, stillness, gyro offset.

Each is judged on signals whose answer is known, at noise levels of real sensors held by
real people (not only of a clean model), so that none of them can lean on a constant
that fits one sensor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from sensorhub.analysis import turnarounds
from sensorhub.analysis.gyro_offset import GyroOffset
from sensorhub.analysis.stillness import StillnessDetector, StillnessSettings
from sensorhub.analysis.turnarounds import (
    BAND_HZ,
    cumulative_trapezoid,
    height_proxy,
    swing_extremes,
    typical_swing,
)

G = 9.80665


def reps_height(rate: float, *, reps: int = 8, period_s: float = 3.0, rom_m: float = 0.4):
    """Height of a lift: a pause, then ``reps`` smooth swings down and up, then a pause."""
    pause = 4.0
    t = np.arange(0.0, 2 * pause + reps * period_s, 1.0 / rate)
    phase = np.clip((t - pause) / period_s, 0.0, reps)
    z = -0.5 * rom_m * (1.0 - np.cos(2.0 * math.pi * phase))
    return t, z


def test_cumulative_trapezoid_integrates_exactly_for_a_straight_line() -> None:
    t = np.linspace(0.0, 2.0, 21)
    out = cumulative_trapezoid(3.0 * t, t)
    assert out[0] == 0.0
    assert np.allclose(out, 1.5 * t**2)


@pytest.mark.parametrize("rate", [12.5, 50.0, 200.0])
def test_the_proxy_turns_where_the_lift_turns_though_the_acceleration_is_biased(
    rate: float,
) -> None:
    t, z = reps_height(rate)
    accel = np.gradient(np.gradient(z, t), t) + 0.05  # a bias that drifts metres unfiltered
    proxy = height_proxy(accel, rate)
    swing = 0.3 * typical_swing(proxy)
    turns = swing_extremes(proxy, swing)
    bottoms = [k for k in turns if proxy[k] < 0]
    # Eight bottoms, each within a sample or two of the true one (pause + (k + 0.5) period).
    true_bottoms = 4.0 + (np.arange(8) + 0.5) * 3.0
    assert len(bottoms) == 8
    assert np.allclose(t[bottoms], true_bottoms, atol=max(0.1, 2.0 / rate))
    # Double integration without the filter drifts by metres over the same stretch.
    raw = cumulative_trapezoid(cumulative_trapezoid(accel, t), t)
    assert abs(raw[-1] - z[-1]) > 5.0


def test_swing_extremes_need_the_swing_to_come_back() -> None:
    z = np.array([0.0, 0.3, 0.28, 0.31, 0.0, -0.01, 0.2, 0.19])
    assert swing_extremes(z, 0.1) == [0, 3, 5]  # the last top is not confirmed yet
    assert swing_extremes(z, 0.5) == []
    with pytest.raises(ValueError, match="positive"):
        swing_extremes(z, 0.0)


def reference_height_proxy(accel: np.ndarray, rate: float) -> np.ndarray:
    """The proxy as first written, on scipy's own ``sosfiltfilt``: what the fast one must match."""
    n = len(accel)
    if n < 8:
        return np.zeros(n)
    low, high = BAND_HZ
    band = butter(2, [low, min(high, 0.45 * rate)], btype="band", fs=rate, output="sos")
    highpass = butter(2, low, btype="high", fs=rate, output="sos")
    velocity = np.cumsum(accel - float(np.mean(accel))) / rate
    pad = min(n - 1, 3 * 2 * (len(band) + 1))
    velocity = sosfiltfilt(band, velocity - float(np.mean(velocity)), padlen=pad)
    height = np.cumsum(velocity) / rate
    pad = min(n - 1, 3 * 2 * (len(highpass) + 1))
    return sosfiltfilt(highpass, height - float(np.mean(height)), padlen=pad)


def reference_swing_extremes(height: np.ndarray, swing_m: float) -> list[int]:
    """Hysteresis over every sample, as first written: what the fast one must match."""
    out: list[int] = []
    z = height.tolist()
    hi = lo = 0
    state = 0
    for i in range(1, len(z)):
        if state >= 0 and z[i] > z[hi]:
            hi = i
        if state <= 0 and z[i] < z[lo]:
            lo = i
        if state >= 0 and z[i] < z[hi] - swing_m:
            out.append(hi)
            state, lo = -1, i
        elif state <= 0 and z[i] > z[lo] + swing_m:
            out.append(lo)
            state, hi = 1, i
    return out


@pytest.mark.parametrize("kernel", ["compiled", "public"])
@pytest.mark.parametrize("rate", [12.5, 50.0, 200.0])
def test_the_proxy_is_scipys_zero_phase_filter_to_the_bit(
    rate: float, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kernel == "public":  # a scipy without the kernel the fast path calls
        monkeypatch.setattr(turnarounds, "_sosfilt_kernel", None)
    else:
        assert turnarounds._sosfilt_kernel is not None  # this scipy has it: it is what runs
    rng = np.random.default_rng(7)
    t, z = reps_height(rate)
    lift = np.gradient(np.gradient(z, t), t)
    for n in [0, 5, 8, 9, 13, 14, 20, 100, len(lift)]:
        accel = lift[:n] + rng.normal(0.0, 0.3, n) + 0.05
        assert np.array_equal(height_proxy(accel, rate), reference_height_proxy(accel, rate))


def test_swing_extremes_skip_only_what_cannot_change_the_answer() -> None:
    rng = np.random.default_rng(11)
    _, z = reps_height(50.0)
    cases = [
        z,
        z + rng.normal(0.0, 0.005, len(z)),  # wobbles that make and unmake turns
        np.round(z, 2),  # flat steps: ties between neighbours
        np.cumsum(rng.normal(0.0, 0.01, 500)),
        np.array([0.0, 1.0, 1.0, 0.0, 0.0, 2.0]),
        np.array([0.0, math.nan, 0.5, -0.5, 0.5]),
    ]
    for height in cases:
        for swing in (0.005, 0.01, 0.05, 0.2):
            assert swing_extremes(height, swing) == reference_swing_extremes(height, swing)


def test_typical_swing_is_zero_for_a_body_that_never_swings() -> None:
    assert typical_swing(np.zeros(100)) == 0.0


def still_then_moving(rate: float, accel_noise: float, gyro_noise: float, seed: int = 3):
    """10 s held (with the given noise), 4 s moving (the sensor swung about x), 10 s held."""
    rng = np.random.default_rng(seed)
    n = round(24 * rate)
    t = np.arange(n) / rate
    moving = (t >= 10) & (t < 14)
    rate_x = np.where(moving, 1.5 * np.sin(2 * math.pi * 1.0 * (t - 10)), 0.0)
    angle = np.cumsum(rate_x) / rate
    accel = np.stack([np.zeros(n), G * np.sin(angle), G * np.cos(angle)], axis=1)
    accel[moving, 2] += 3.0 * np.sin(2 * math.pi * 1.3 * t[moving])
    gyro = np.stack([rate_x, np.zeros(n), np.zeros(n)], axis=1) + np.array([0.02, -0.03, 0.01])
    accel += rng.normal(0.0, accel_noise, accel.shape)
    gyro += rng.normal(0.0, gyro_noise, gyro.shape)
    return t, accel, gyro, moving


@pytest.mark.parametrize(
    ("accel_noise", "gyro_noise"),
    [(0.004, 0.002), (0.1, 0.02)],  # a clean model's noise; a bar held by a person
    ids=["clean", "held"],
)
def test_stillness_is_judged_against_the_recordings_own_noise(
    accel_noise: float, gyro_noise: float
) -> None:
    rate = 100.0
    t, accel, gyro, moving = still_then_moving(rate, accel_noise, gyro_noise)
    detector = StillnessDetector(rate)
    blocks = detector.push(accel, gyro) + detector.flush()
    still = np.concatenate([b.still for b in blocks])
    assert len(still) == len(t)
    held = ~moving & (np.abs(t - 10) > 0.3) & (np.abs(t - 14) > 0.3)
    assert still[held].mean() > 0.8
    assert still[moving].mean() < 0.05


def test_stillness_verdicts_do_not_depend_on_the_batches() -> None:
    rate = 50.0
    _, accel, gyro, _ = still_then_moving(rate, 0.05, 0.01)
    whole = StillnessDetector(rate)
    a = np.concatenate([b.still for b in whole.push(accel, gyro) + whole.flush()])
    pieces = StillnessDetector(rate)
    blocks = []
    for start in range(0, len(accel), 7):
        blocks += pieces.push(accel[start : start + 7], gyro[start : start + 7])
    b = np.concatenate([blk.still for blk in blocks + pieces.flush()])
    assert np.array_equal(a, b)


def test_stillness_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="margin"):
        StillnessSettings(margin=0.0)
    with pytest.raises(ValueError, match="quantile"):
        StillnessSettings(quantile=1.0)


def test_the_gyro_offset_is_found_against_gravity_while_the_sensor_turns() -> None:
    """A sensor that never stops rocking (±10°, 0.5 Hz) with a 3 °/s offset on each axis."""
    rate, block = 100.0, 10
    rng = np.random.default_rng(5)
    offset = np.radians([3.0, -3.0, 2.0])
    t = np.arange(0.0, 60.0, 1.0 / rate)
    angle = np.radians(10.0) * np.sin(2 * math.pi * 0.5 * t)
    rate_x = np.gradient(angle, t)
    accel = np.stack([np.zeros_like(t), G * np.sin(angle), G * np.cos(angle)], axis=1)
    accel += rng.normal(0.0, 0.1, accel.shape)
    gyro = np.stack([rate_x, np.zeros_like(t), np.zeros_like(t)], axis=1) + offset
    gyro += rng.normal(0.0, 0.02, gyro.shape)
    estimate = GyroOffset()
    for start in range(0, len(t), block):
        a, g = accel[start : start + block], gyro[start : start + block]
        spread = float(np.ptp(np.linalg.norm(a, axis=1)))
        value = estimate.add(block / rate, a.mean(axis=0), g.mean(axis=0), spread)
    # Across gravity (x and y here) it is measured; along it (z) only the mean rate speaks.
    assert np.allclose(value[:2], offset[:2], atol=np.radians(0.3))
    assert abs(value[2] - offset[2]) < np.radians(0.5)


def test_the_gyro_offset_rejects_a_nonsense_memory() -> None:
    with pytest.raises(ValueError, match="memory_s"):
        GyroOffset(memory_s=-1.0)
