"""Pelvic tilt from a randomly mounted pelvis IMU, scored against the virtual ground truth."""

from __future__ import annotations

import math
import tracemalloc
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from firmware_protocol.virtual import truth as vtruth
from firmware_protocol.virtual.imu_model import ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory, quat_conjugate, quat_rotate
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.analysis.athlete import TILT_HISTORY_S, AthleteAnalyzer
from sensorhub.analysis.tilt import (
    ANTERIOR_TILT_LIMIT_DEG,
    LARGE_RANGE_LIMIT_DEG,
    NeutralWindowError,
    RepTilt,
    TiltCalibration,
    TiltEstimator,
    estimate_tilt,
    rep_tilt,
)
from sensorhub.errors import SensorhubError

G = 9.80665
# Tilt RMSE over the rep windows of the cases below: 0.19-0.32°. Across 48 other
# scenario, part, mounting and rate combinations the largest was 0.51° at 100-800 Hz and
# 0.84° at 50 Hz (fast bodyweight reps).
RMSE_BOUND_DEG = 0.5
REP_METRIC_TOL_DEG = 1.0


@dataclass(frozen=True)
class Recording:
    traj: Trajectory
    t: np.ndarray
    accel: np.ndarray
    gyro: np.ndarray
    fs: float
    mounting: np.ndarray

    @property
    def window(self) -> tuple[float, float]:
        return (0.0, self.traj.scenario.calibration_s)


CASES = {
    # name: (scenario, trajectory seed, rate Hz, quantised int16 counts)
    "preset-hip_thrust-200": ("hip_thrust", 3, 200.0, True),
    "preset-bodyweight-200": ("bodyweight_hip_thrust", 4, 200.0, True),
    "random-hip_thrust-100": ("random:hip_thrust:7", 7, 100.0, True),
    "random-bodyweight-400": ("random:bodyweight_hip_thrust:2", 2, 400.0, False),
}


@cache
def recording(case: str) -> Recording:
    name, seed, fs, quantised = CASES[case]
    if name.startswith("random:"):
        _, exercise, rseed = name.split(":")
        scenario = Scenario.random(exercise, np.random.default_rng(int(rseed)), sets=2)  # type: ignore[arg-type]
    else:
        scenario = Scenario.preset(name)
    traj = Trajectory.from_scenario(scenario, seed)
    rng = np.random.default_rng(1000 + seed)
    mounting = random_mounting(rng)
    sim = ImuSimulator(traj, "pelvis", mounting=mounting, rng=rng)
    t = np.arange(0.0, traj.duration_s, 1.0 / fs)
    if quantised:
        a, g = sim.measure(t, accel_range_g=16, gyro_range_dps=2000, odr_hz=fs)
        accel = a * (16 * G / 32768)
        gyro = g * (math.radians(2000) / 32768)
    else:
        accel, gyro = sim.measure_si(t, odr_hz=fs)
    return Recording(traj, t, accel, gyro, fs, mounting)


@cache
def batch_tilt(case: str) -> np.ndarray:
    rec = recording(case)
    return estimate_tilt(rec.t, rec.accel, rec.gyro, rec.fs, neutral_window=rec.window)


def rep_windows(rec: Recording) -> np.ndarray:
    mask = np.zeros(rec.t.size, dtype=bool)
    for r in rec.traj.truth.reps:
        mask |= (rec.t >= r.t_start) & (rec.t <= r.t_end)
    return mask


def measured_reps(rec: Recording, tilt: np.ndarray) -> list[tuple[vtruth.RepTruth, RepTilt | None]]:
    return [
        (
            r,
            rep_tilt(
                rec.t,
                tilt,
                t_start=r.t_start,
                t_end=r.t_end,
                concentric_start=r.concentric_start,
                lockout_start=r.lockout_start,
                lockout_end=r.lockout_end,
                partial=r.partial,
            ),
        )
        for r in rec.traj.truth.reps
    ]


# --- accuracy against the truth -------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_tilt_rmse_through_the_reps(case: str) -> None:
    rec = recording(case)
    tilt = batch_tilt(case)
    mask = rep_windows(rec)
    assert not np.any(np.isnan(tilt[mask])), "axis not learned before the first rep"
    err = tilt[mask] - rec.traj.tilt_deg(rec.t[mask])
    rmse = float(np.sqrt(np.mean(err**2)))
    assert rmse <= RMSE_BOUND_DEG, f"{case}: tilt RMSE {rmse:.2f}°"


@pytest.mark.parametrize("case", list(CASES))
def test_rep_verdicts_and_sign(case: str) -> None:
    rec = recording(case)
    reps = measured_reps(rec, batch_tilt(case))
    full = [(r, m) for r, m in reps if not r.partial]
    hits = 0
    for r, m in reps:
        assert m is not None
        assert r.tilt_bottom_deg is not None
        assert r.tilt_lockout_deg is not None
        assert r.tilt_range_deg is not None
        assert m.lockout_deg > m.bottom_deg + 5.0  # posterior positive: tilt rises in the thrust
        assert abs(m.bottom_deg - r.tilt_bottom_deg) < REP_METRIC_TOL_DEG
        assert abs(m.lockout_deg - r.tilt_lockout_deg) < REP_METRIC_TOL_DEG
        assert abs(m.range_deg - r.tilt_range_deg) < REP_METRIC_TOL_DEG
        hits += m.verdict == r.tilt_verdict
        if r.partial:
            assert m.verdict is None
    assert hits / len(reps) >= 0.9, f"{hits}/{len(reps)} verdicts match"
    assert len(full) >= 10


def test_the_scored_cases_contain_every_verdict() -> None:
    """Otherwise the verdict test above could pass by always answering "ok"."""
    verdicts = {r.tilt_verdict for case in CASES for r in recording(case).traj.truth.reps}
    assert {"ok", "anterior_tilt", "large_range", None} <= verdicts


def learned_calibration(rec: Recording) -> TiltCalibration:
    """Neutral and axis as a whole recording teaches them (neutral window, then swings)."""
    est = TiltEstimator(rec.fs, neutral_window=rec.window)
    est.update(rec.t, rec.accel, rec.gyro)
    cal = est.calibration
    assert cal is not None
    return cal


def test_learned_axis_is_the_pelvis_mediolateral_axis_pointing_right() -> None:
    rec = recording("preset-hip_thrust-200")
    cal = learned_calibration(rec)
    assert cal.axis_sensor is not None
    # Posterior tilt is a rotation about the pelvis's right-pointing axis (-y, y = left).
    truth_axis = quat_rotate(quat_conjugate(rec.mounting), np.array([0.0, -1.0, 0.0]))
    assert math.degrees(math.acos(float(np.clip(cal.axis_sensor @ truth_axis, -1, 1)))) < 2.0
    # The neutral's vertical is the pelvis's anterior axis in the calibration bridge.
    anterior = quat_rotate(quat_conjugate(rec.mounting), np.array([1.0, 0.0, 0.0]))
    assert cal.up_sensor @ anterior > math.cos(math.radians(2.0))


# --- streaming, batching, rates -----------------------------------------------------------


def test_streaming_in_small_batches_equals_the_batch_form() -> None:
    rec = recording("preset-bodyweight-200")
    est = TiltEstimator(rec.fs, neutral_window=rec.window)
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < rec.t.size:
        n = int(rng.integers(10, 21))
        parts.append(est.update(rec.t[i : i + n], rec.accel[i : i + n], rec.gyro[i : i + n]))
        i += n
    streamed = np.concatenate(parts)
    batch = batch_tilt("preset-bodyweight-200")
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    # Running sums add up in a different order, so the last bits differ; nothing more.
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=1e-5, equal_nan=True)
    # Before the axis is learned both report NaN; the calibration window is never tilt.
    assert np.all(np.isnan(batch[rec.t <= rec.window[1]]))
    first = int(np.flatnonzero(~np.isnan(batch))[0])
    assert rec.t[first] < rec.traj.truth.reps[0].t_start
    assert not np.any(np.isnan(batch[first:]))


def test_stored_calibration_gives_tilt_without_a_neutral_window() -> None:
    rec = recording("preset-hip_thrust-200")
    cal = learned_calibration(rec)
    assert cal.axis_sensor is not None
    again = TiltEstimator(rec.fs, calibration=cal)
    tilt = again.update(rec.t, rec.accel, rec.gyro)
    assert again.axis_learned
    mask = rep_windows(rec)
    err = tilt[mask] - rec.traj.tilt_deg(rec.t[mask])
    assert float(np.sqrt(np.mean(err**2))) <= RMSE_BOUND_DEG


def pairing_calibration(rec: Recording) -> TiltCalibration:
    """What pairing stores: gravity over a neutral hold, no axis."""
    hold = (rec.t >= 0.5) & (rec.t <= rec.window[1] - 0.5)
    return TiltCalibration.from_gravity(rec.accel[hold].mean(axis=0))


@pytest.mark.parametrize(
    ("case", "stored"),
    [("preset-hip_thrust-200", "learned"), ("random-hip_thrust-100", "pairing")],
)
def test_a_stored_calibration_started_mid_session_primes_the_ahrs_on_a_still_pose(
    case: str, stored: str
) -> None:
    # A hub restarted mid-session, or a session started as the athlete sets up: an AHRS
    # left to settle from level while the pelvis moved ended some degrees off (8° through
    # the whole first set of the random hip thrust started 2 s before its first rep).
    rec = recording(case)
    cal = learned_calibration(rec) if stored == "learned" else pairing_calibration(rec)
    truth = rec.traj.tilt_deg(rec.t)
    reps = rec.traj.truth.reps
    for start_s in (reps[0].t_start - 2.0, reps[1].t_start + 0.3, reps[2].t_end + 1.0):
        i = int(np.searchsorted(rec.t, start_s))
        streamed = TiltEstimator(rec.fs, calibration=cal)
        tilt = np.concatenate(
            [
                streamed.update(rec.t[j : j + 19], rec.accel[j : j + 19], rec.gyro[j : j + 19])
                for j in range(i, len(rec.t), 19)
            ]
        )
        whole = TiltEstimator(rec.fs, calibration=cal).update(
            rec.t[i:], rec.accel[i:], rec.gyro[i:]
        )
        np.testing.assert_array_equal(np.isnan(tilt), np.isnan(whole))
        reps_after = rep_windows(rec)[i:] & np.isfinite(tilt)
        err = tilt[reps_after] - truth[i:][reps_after]
        assert float(np.sqrt(np.mean(err**2))) <= RMSE_BOUND_DEG, start_s
        assert float(np.max(np.abs(err))) < 1.5, start_s
        # NaN until the first still pose (a lockout hold at the latest), then known.
        known = np.flatnonzero(np.isfinite(tilt))
        assert rec.t[i + known[0]] - start_s < 3.0
        assert np.all(np.isfinite(tilt[known[0] :]))


def test_a_session_on_the_pairing_calibration_learns_the_axis_in_its_first_rep() -> None:
    # A session started just before the first set, on the neutral pairing measured: the
    # AHRS settling from level must not count as a swing, or the axis waits a whole set.
    rec = recording("preset-hip_thrust-200")
    hold = (rec.t >= 0.5) & (rec.t <= rec.window[1] - 0.5)
    cal = TiltCalibration.from_gravity(rec.accel[hold].mean(axis=0))
    reps = rec.traj.truth.reps
    i = int(np.searchsorted(rec.t, reps[0].t_start - 2.0))
    streamed = TiltEstimator(rec.fs, calibration=cal)
    tilt = np.concatenate(
        [
            streamed.update(rec.t[j : j + 19], rec.accel[j : j + 19], rec.gyro[j : j + 19])
            for j in range(i, len(rec.t), 19)
        ]
    )
    t = rec.t[i:]
    first = float(t[np.flatnonzero(np.isfinite(tilt))[0]])
    assert first < reps[0].t_end, f"tilt known from {first:.2f} s; rep 1 ends {reps[0].t_end:.2f}"
    later = np.zeros(len(t), dtype=bool)
    for r in reps[1:]:
        later |= (t >= r.t_start) & (t <= r.t_end)
    assert not np.any(np.isnan(tilt[later]))
    err = tilt[later] - rec.traj.tilt_deg(t[later])
    assert float(np.sqrt(np.mean(err**2))) <= RMSE_BOUND_DEG


@pytest.mark.parametrize("case", list(CASES))
def test_calibration_from_the_gravity_measured_at_pairing(case: str) -> None:
    # Pairing records only the accelerometer's mean over a neutral hold, its zero-g offset
    # included (taken out as the offsets are learned: 1.74° RMSE with it left in, for the
    # 400 Hz bodyweight recording); the axis is then learned from the reps.
    rec = recording(case)
    hold = (rec.t >= rec.window[0]) & (rec.t <= rec.window[1])
    cal = pairing_calibration(rec)
    assert cal.axis_sensor is None
    assert float(cal.up_sensor @ rec.accel[hold].mean(axis=0)) > 9.0
    tilt = TiltEstimator(rec.fs, calibration=cal).update(rec.t, rec.accel, rec.gyro)
    mask = rep_windows(rec) & np.isfinite(tilt)
    assert mask.sum() > 0.5 * rep_windows(rec).sum()
    err = tilt[mask] - rec.traj.tilt_deg(rec.t[mask])
    assert float(np.sqrt(np.mean(err**2))) <= RMSE_BOUND_DEG


def test_a_calibration_of_no_gravity_is_refused() -> None:
    with pytest.raises(ValueError, match="non-zero 3-vector"):
        TiltCalibration.from_gravity([0.0, 0.0, 0.0])


def test_axis_is_not_learned_from_turning_about_the_vertical() -> None:
    """Turning on the spot never swings the vertical away from neutral: no axis, no tilt."""
    fs = 200.0
    t = np.arange(0.0, 20.0, 1.0 / fs)
    up = np.array([0.3, -0.5, 0.81])
    up /= np.linalg.norm(up)
    accel = np.tile(G * up, (t.size, 1))
    rate = np.where(t > 4.0, 1.5 * np.sin(t), 0.0)  # rad/s about the vertical
    gyro = rate[:, None] * up
    est = TiltEstimator(fs, neutral_window=(0.0, 3.0))
    tilt = est.update(t, accel, gyro)
    assert np.all(np.isnan(tilt))
    assert not est.axis_learned
    cal = est.calibration
    assert cal is not None
    assert cal.axis_sensor is None
    np.testing.assert_allclose(cal.up_sensor, up, atol=1e-6)


# --- rep metrics and the verdict rule -------------------------------------------------------


def test_limits_are_the_truths() -> None:
    assert vtruth.ANTERIOR_TILT_LIMIT_DEG == ANTERIOR_TILT_LIMIT_DEG
    assert vtruth.LARGE_RANGE_LIMIT_DEG == LARGE_RANGE_LIMIT_DEG


@pytest.mark.parametrize("name", ["hip_thrust", "bodyweight_hip_thrust"])
def test_rep_tilt_reproduces_truth_on_the_true_trace(name: str) -> None:
    traj = Trajectory.from_scenario(Scenario.preset(name), 11)
    t = np.arange(0.0, traj.duration_s, 1e-3)
    tilt = traj.tilt_deg(t)
    rec = Recording(traj, t, np.empty((0, 3)), np.empty((0, 3)), 1000.0, np.empty(4))
    for r, m in measured_reps(rec, tilt):
        assert m is not None
        assert m.bottom_deg == pytest.approx(r.tilt_bottom_deg, abs=1e-3)
        assert m.lockout_deg == pytest.approx(r.tilt_lockout_deg, abs=1e-3)
        assert m.range_deg == pytest.approx(r.tilt_range_deg, abs=1e-3)
        assert (m.verdict, m.reason) == (r.tilt_verdict, r.tilt_reason)


@pytest.mark.parametrize(
    ("lockout", "top_range", "partial"),
    [(0.0, 30.0, False), (-5.0, 30.0, False), (-5.01, 30.0, False), (-9.0, 60.0, False),
     (2.0, 45.0, False), (2.0, 45.5, False), (-9.0, 60.0, True)],
)  # fmt: skip
def test_verdict_rule_matches_the_truths(lockout: float, top_range: float, partial: bool) -> None:
    # A flat bottom at lockout - range, a ramp up, a flat lockout.
    t = np.linspace(0.0, 3.0, 3001)
    bottom = lockout - top_range
    tilt = np.interp(t, [0.0, 0.5, 1.0, 3.0], [bottom, bottom, lockout, lockout])
    m = rep_tilt(
        t,
        tilt,
        t_start=0.0,
        t_end=3.0,
        concentric_start=0.5,
        lockout_start=1.0,
        lockout_end=2.5,
        partial=partial,
    )
    assert m is not None
    assert m.bottom_deg == pytest.approx(bottom)
    assert m.lockout_deg == pytest.approx(lockout)
    assert m.range_deg == pytest.approx(top_range)
    expected = vtruth.tilt_verdict(m.lockout_deg, m.range_deg, partial=partial)
    assert (m.verdict, m.reason) == expected


def test_rep_tilt_measures_a_rep_that_crosses_180_degrees_on_the_continuous_angle() -> None:
    # 170° at the bottom up to -170° (= 190°) at lockout: a 20° rep, not a 340° one.
    t = np.linspace(0.0, 3.0, 3001)
    continuous = np.interp(t, [0.0, 0.5, 1.0, 3.0], [170.0, 170.0, 190.0, 190.0])
    wrapped = 180.0 - (180.0 - continuous) % 360.0
    assert wrapped.max() - wrapped.min() > 300.0
    m = rep_tilt(
        t,
        wrapped,
        t_start=0.0,
        t_end=3.0,
        concentric_start=0.5,
        lockout_start=1.0,
        lockout_end=2.5,
    )
    assert m is not None
    assert m.range_deg == pytest.approx(20.0)
    assert m.bottom_deg == pytest.approx(170.0)
    assert m.lockout_deg == pytest.approx(-170.0)


def test_rep_tilt_is_none_where_the_tilt_is_unknown() -> None:
    t = np.linspace(0.0, 4.0, 401)
    tilt = np.zeros_like(t)

    def measure(t: np.ndarray, tilt: np.ndarray, lockout_end: float = 2.0) -> RepTilt | None:
        return rep_tilt(
            t,
            tilt,
            t_start=1.0,
            t_end=3.0,
            concentric_start=1.0,
            lockout_start=1.5,
            lockout_end=lockout_end,
        )

    assert measure(t, tilt) is not None
    tilt[250] = np.nan  # t = 2.5, inside the rep
    assert measure(t, tilt) is None
    assert measure(t[:200], tilt[:200]) is None  # the trace ends before the rep does
    with pytest.raises(ValueError, match="lockout_end"):
        measure(t, np.zeros_like(t), lockout_end=1.2)


# --- configuration errors -------------------------------------------------------------------


def test_configuration_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="sample_rate_hz"):
        TiltEstimator(20.0, neutral_window=(0.0, 3.0))
    with pytest.raises(ValueError, match="neutral_window"):
        TiltEstimator(200.0)
    with pytest.raises(ValueError, match="neutral_window"):
        TiltEstimator(200.0, neutral_window=(1.0, 1.1))
    with pytest.raises(ValueError, match="unit quaternion"):
        TiltCalibration(np.array([1.0, 1.0, 0.0, 0.0]), None)
    with pytest.raises(ValueError, match="axis_sensor"):
        TiltCalibration(np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0]))
    est = TiltEstimator(200.0, neutral_window=(0.0, 3.0))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        est.update(np.arange(3.0), np.zeros((3, 2)), np.zeros((3, 3)))
    est.update(np.array([0.0, 0.005]), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="increase strictly"):
        est.update(np.array([0.005]), np.zeros((1, 3)), np.zeros((1, 3)))


def test_a_missed_neutral_window_is_an_error_of_its_own_and_can_be_set_again() -> None:
    # The live hub's answer to a pelvis that was away while the athlete held neutral.
    rec = recording("preset-hip_thrust-200")
    late = rec.t >= 1.0
    analyzer = AthleteAnalyzer("Ada", "hip_thrust", {"pelvis": rec.fs}, neutral_window=(0.0, 0.5))
    with pytest.raises(NeutralWindowError, match="holds 0 samples") as raised:
        analyzer.feed_imu("pelvis", rec.t[late][:200], rec.accel[late][:200], rec.gyro[late][:200])
    assert isinstance(raised.value, SensorhubError)  # the CLI and the hub catch only those
    start = float(rec.t[late][200])
    analyzer.recalibrate_tilt((start, start + 1.5))  # still inside the opening bridge
    t, accel, gyro = rec.t[late][200:], rec.accel[late][200:], rec.gyro[late][200:]
    for i in range(0, len(t), 20):
        analyzer.feed_imu("pelvis", t[i : i + 20], accel[i : i + 20], gyro[i : i + 20])
    times, degrees = analyzer.tilt_trace()
    reps = rep_windows(Recording(rec.traj, times, accel, gyro, rec.fs, rec.mounting))
    known = reps & np.isfinite(degrees)
    assert known.sum() > 0.5 * reps.sum()
    err = degrees[known] - rec.traj.tilt_deg(times[known])
    assert float(np.sqrt(np.mean(err**2))) <= RMSE_BOUND_DEG


def test_the_live_tilt_history_takes_its_memory_at_the_start_and_keeps_two_minutes() -> None:
    # A hub runs for hours: the tilt kept for measuring reps must not grow with the session
    # (it used to fill over its first two minutes, frame by frame).
    rate, batch = 200.0, 50
    still_accel = np.tile([0.0, 0.0, 9.80665], (batch, 1))
    still_gyro = np.zeros((batch, 3))
    # Traced from the start, so that a buffer replaced by a larger one counts only the
    # difference (memory allocated before tracing and freed after it counts as nothing).
    tracemalloc.start()
    try:
        analyzer = AthleteAnalyzer("Ada", "hip_thrust", {"pelvis": rate}, neutral_window=(0.0, 0.5))

        def feed(seconds: float, start: int) -> int:
            for i in range(start, start + round(seconds * rate), batch):
                analyzer.feed_imu("pelvis", (i + np.arange(batch)) / rate, still_accel, still_gyro)
            return start + round(seconds * rate)

        # The other state's buffers are sized by the batch or by a fixed stretch of stream
        # (the velocity estimator keeps about 23 s of it): 30 s fills them all.
        fed = feed(30.0, 0)
        before, _ = tracemalloc.get_traced_memory()
        fed = feed(TILT_HISTORY_S, fed)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = TILT_HISTORY_S * rate * 16  # bytes of times and degrees for the whole history
    # A history that filled frame by frame would grow by 90 of its 120 s here.
    assert after - before < 0.25 * held
    times, degrees = analyzer.tilt_trace()
    assert times[-1] == (fed - 1) / rate
    assert TILT_HISTORY_S <= times[-1] - times[0] <= 1.3 * TILT_HISTORY_S
    assert np.all(np.diff(times) > 0)
    assert len(degrees) == len(times)
