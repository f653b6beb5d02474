"""Rep detection and per-rep metrics against the ground truth of the motion model."""

from __future__ import annotations

import math
import tracemalloc
from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from scipy import special

from firmware_protocol.virtual.imu_model import BarSensorSimulator, ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.scenario import Scenario
from firmware_protocol.virtual.truth import RepTruth
from sensorhub.analysis.exercises import EXERCISES
from sensorhub.analysis.reps import EXERCISE_LIMITS, Rep, RepDetector, detect_reps
from sensorhub.analysis.scoring import match_reps
from sensorhub.analysis.velocity import VerticalMotion, transducer_motion, vertical_motion

G = 9.80665
PRESETS = ("hip_thrust", "bodyweight_hip_thrust", "squat", "deadlift")


@cache
def trajectory(name: str, seed: int) -> Trajectory:
    if name.startswith("random:"):
        exercise = name.removeprefix("random:")
        rng = np.random.default_rng(seed)
        scenario = Scenario.random(exercise, rng, sets=2)  # type: ignore[arg-type]
        return Trajectory.from_scenario(scenario, seed)
    return Trajectory.from_scenario(Scenario.preset(name), seed)


@cache
def imu_motion(name: str, seed: int = 1, rate: float = 200.0) -> VerticalMotion:
    traj = trajectory(name, seed)
    rng = np.random.default_rng([seed, 99])
    t = np.arange(0.0, traj.duration_s, 1.0 / rate)
    sim = ImuSimulator(traj, traj.lift_body, mounting=random_mounting(rng), rng=rng)
    accel, gyro = sim.measure(t, accel_range_g=16, gyro_range_dps=2000, odr_hz=rate)
    return vertical_motion(t, accel * (16 * G / 32768), gyro * (math.radians(2000) / 32768), rate)


def exercise_of(name: str) -> str:
    return name.removeprefix("random:")


def scored(reps: list[Rep], truth: tuple[RepTruth, ...]) -> tuple[float, dict[str, float]]:
    """F1 (a partial flag must be right too) and RMSEs over matched full reps."""
    pairs = match_reps(reps, truth)
    right = [(reps[i], truth[j]) for i, j in pairs if reps[i].partial == truth[j].partial]
    f1 = 2 * len(right) / (len(reps) + len(truth))
    full = [(r, q) for r, q in right if not q.partial]

    def rmse(field: str) -> float:
        errors = [getattr(r, field) - getattr(q, field) for r, q in full]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    return f1, {f: rmse(f) for f in ("mcv_mps", "peak_velocity_mps", "rom_m", "mpv_mps")}


def counts_per_set(reps: list[Rep], truth: tuple[RepTruth, ...]) -> dict[int, tuple[int, int]]:
    """Per true set: (full reps detected, partial reps detected), by matching."""
    out = {q.set_index: (0, 0) for q in truth}
    for i, j in match_reps(reps, truth):
        full, partial = out[truth[j].set_index]
        out[truth[j].set_index] = (full, partial + 1) if reps[i].partial else (full + 1, partial)
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_presets_every_rep_counted_in_every_set_and_measured(name: str) -> None:
    traj = trajectory(name, 1)
    reps = detect_reps(imu_motion(name), name)
    truth = traj.truth.reps
    expected = {s.index: (s.reps, s.partial_reps) for s in traj.truth.sets}
    found = counts_per_set(reps, truth)
    # Measured: every set exact but one rep missed in the bodyweight thrust's first set
    # and one partial rep of the squat's last set taken for full (its ROM comes out short
    # of the set's: see tests/test_velocity.py on a set's last rep).
    for index, (full, partial) in expected.items():
        assert abs(found[index][0] - full) + abs(found[index][1] - partial) <= 1, found
    assert len(reps) <= len(truth)  # nothing counted besides: no walking, no re-racking
    f1, rmse = scored(reps, truth)
    assert f1 >= 0.95
    # Measured on these recordings: MCV 0.003-0.027, peak 0.004-0.079 (the squat's last
    # reps), ROM 0.0014-0.059, MPV 0.003-0.027.
    squat = name == "squat"
    assert rmse["mcv_mps"] < 0.035
    assert rmse["peak_velocity_mps"] < (0.1 if squat else 0.025)
    assert rmse["rom_m"] < (0.08 if squat else 0.015)
    assert rmse["mpv_mps"] < 0.035


@pytest.mark.parametrize(
    ("name", "seed"),
    [
        ("random:hip_thrust", 3),
        ("random:bodyweight_hip_thrust", 4),
        ("random:squat", 3),
        ("random:deadlift", 2),
    ],
)
def test_random_sessions(name: str, seed: int) -> None:
    traj = trajectory(name, seed)
    reps = detect_reps(imu_motion(name, seed), exercise_of(name))
    f1, rmse = scored(reps, traj.truth.reps)
    assert f1 >= (0.93 if name == "random:squat" else 0.95)  # measured 0.94 (squat)-1.0
    # Measured 0.003-0.012, and 0.060 in the squat: a set's last rep, before the walk
    # back to the rack, comes out slow (see tests/test_velocity.py).
    assert rmse["mcv_mps"] < (0.07 if name == "random:squat" else 0.03)


def test_partial_reps_are_flagged_and_reps_carry_their_phases() -> None:
    traj = trajectory("hip_thrust", 1)
    reps = detect_reps(imu_motion("hip_thrust"), "hip_thrust")
    partial = [r for r in reps if r.partial]
    true_partial = [q for q in traj.truth.reps if q.partial]
    assert len(partial) == len(true_partial) == 1
    assert partial[0].concentric_start == pytest.approx(true_partial[0].concentric_start, abs=0.05)
    for rep in reps:
        # Up-first: concentric, lockout, eccentric, each following the other.
        assert rep.t_start == rep.concentric_start < rep.concentric_end
        assert rep.concentric_end == rep.lockout_start <= rep.lockout_end
        assert rep.lockout_end == rep.eccentric_start < rep.eccentric_end == rep.t_end
        assert rep.time_under_tension_s == pytest.approx(rep.t_end - rep.t_start)
        assert rep.concentric_s == pytest.approx(rep.concentric_end - rep.concentric_start)
        assert rep.mcv_mps == pytest.approx(rep.rom_m / rep.concentric_s)
        assert rep.mcv_mps <= rep.mpv_mps + 1e-9 <= rep.peak_velocity_mps + 1e-9
        assert rep.mean_power_w is None
    assert [r.index for r in reps] == list(range(1, len(reps) + 1))


def test_squat_phases_start_with_the_descent() -> None:
    traj = trajectory("squat", 1)
    reps = detect_reps(imu_motion("squat"), "squat")
    last = {(s.index, s.reps + s.partial_reps) for s in traj.truth.sets}
    last |= {(s.index, s.reps) for s in traj.truth.sets}  # the last full one, too
    for rep, (i, j) in zip(reps, match_reps(reps, traj.truth.reps), strict=True):
        true = traj.truth.reps[j]
        assert reps[i] is rep
        assert rep.t_start == rep.eccentric_start < rep.eccentric_end <= rep.concentric_start + 0.1
        assert rep.concentric_end == rep.lockout_start < rep.lockout_end == rep.t_end
        # A set's last rep ends its concentric up to 0.08 s early (its top turn is found
        # early and its hold is not taken for rest: see tests/test_velocity.py); the
        # hold before it then starts its descent early, measured up to 1.02 s.
        at_end = (true.set_index, true.rep_index) in last
        start_tolerance = 1.1 if at_end else 0.1
        assert rep.eccentric_start == pytest.approx(true.eccentric_start, abs=start_tolerance)
        tolerance = 0.1 if at_end else 0.03
        assert rep.concentric_end == pytest.approx(true.concentric_end, abs=tolerance)
        if (true.set_index, true.rep_index) not in last:  # a set's last hold is estimated
            hold = true.lockout_end - true.lockout_start
            # Measured within 0.1 s but one, 0.21 s short (a lockout ends where the next
            # descent has gone MIN_PHASE_M, and that one's turn was found late).
            assert rep.lockout_hold_s == pytest.approx(hold, abs=0.25)


@pytest.mark.parametrize("name", PRESETS)
def test_disturbances_are_not_counted(name: str) -> None:
    traj = trajectory(name, 1)
    reps = detect_reps(imu_motion(name), name)
    for d in traj.truth.disturbances:
        inside = [r for r in reps if r.concentric_start < d.t_end and r.concentric_end > d.t_start]
        assert not inside, f"{d.kind} at {d.t_start:.1f}-{d.t_end:.1f} s taken for a rep"


@pytest.mark.parametrize("name", ["hip_thrust", "squat", "deadlift"])
def test_bar_velocity_sensor_reps(name: str) -> None:
    traj = trajectory(name, 1)
    t = np.arange(0.0, traj.duration_s, 0.005)
    position, velocity = BarSensorSimulator(traj, rng=np.random.default_rng(8)).measure(t)
    reps = detect_reps(transducer_motion(t, position, velocity), name)
    f1, rmse = scored(reps, traj.truth.reps)
    assert f1 == 1.0
    # Measured 0.007-0.010 m/s here (level crossings of the averaged speed: 0.013-0.025).
    assert rmse["mcv_mps"] < 0.015


def transducer_set(
    exercise: str, seed: int, rate: float = 200.0
) -> tuple[VerticalMotion, list[float]]:
    """A transducer recording of analytic reps with the true MCV of each, in order.

    Moves follow v ∝ u^a (1 - u)^b over their duration (a, b differ from rep to rep, and
    from the detector's priors); the transducer reports them 20 ms late with 0.01 m/s and
    0.5 mm of white noise. Up-first reps pause 0.6 s at the bottom; squats turn at once.
    """
    rng = np.random.default_rng(seed)
    concentrics = [  # duration s, rise m, a, b
        (0.35, 0.12, 1.5, 1.2),
        (0.5, 0.25, 1.8, 1.3),
        (0.8, 0.3, 2.2, 1.4),
        (1.2, 0.4, 2.0, 1.6),
        (0.6, 0.2, 1.6, 1.2),
    ]
    moves: list[tuple[float, float, float, float, float]] = []
    t = 1.0
    for duration, rise, a, b in concentrics:
        if exercise == "squat":
            moves += [(t, 1.0, -rise, 1.4, 1.8), (t + 1.0, duration, rise, a, b)]
            t += 1.0 + duration + 1.5
        else:
            moves += [(t, duration, rise, a, b), (t + duration + 0.5, 0.9, -rise, 1.5, 1.5)]
            t += duration + 2.0
    times = np.arange(0.0, t + 1.0, 1.0 / rate)
    seen = times - 0.02
    z = np.zeros_like(times)
    v = np.zeros_like(times)
    for t0, duration, rise, a, b in moves:
        u = np.clip((seen - t0) / duration, 0.0, 1.0)
        z += rise * special.betainc(a + 1, b + 1, u)
        v += rise / duration * u**a * (1 - u) ** b / special.beta(a + 1, b + 1)
    z += 0.0005 * rng.standard_normal(len(times))
    v += 0.01 * rng.standard_normal(len(times))
    return transducer_motion(times, z, v), [rise / d for d, rise, _, _ in concentrics]


@pytest.mark.parametrize("exercise", ["hip_thrust", "squat"])
@pytest.mark.parametrize("seed", [1, 2])
def test_bar_velocity_sensor_mcv_on_analytic_sets(exercise: str, seed: int) -> None:
    motion, mcv = transducer_set(exercise, seed)
    reps = detect_reps(motion, exercise)
    assert len(reps) == len(mcv)
    errors = np.array([r.mcv_mps for r in reps]) - mcv
    # Measured 0.006-0.007 m/s, at most 0.012; level crossings of the averaged speed
    # gave 0.009-0.013, at most 0.021.
    assert math.sqrt(float(np.mean(errors**2))) < 0.009
    assert np.abs(errors).max() < 0.015


def test_bar_velocity_sensor_streaming_gives_the_batch_answer() -> None:
    whole, _ = transducer_set("hip_thrust", 3)
    batch = detect_reps(whole, "hip_thrust")
    detector = RepDetector("hip_thrust")
    rng = np.random.default_rng(4)
    streamed: list[Rep] = []
    i = 0
    while i < len(whole.t):
        k = int(rng.integers(1, 25))
        part = slice(i, i + k)
        streamed += detector.update(
            transducer_motion(whole.t[part], whole.position[part], whole.velocity[part])
        )
        i += k
    streamed += detector.flush()
    assert len(streamed) == len(batch) == 5
    for a, b in zip(streamed, batch, strict=True):
        assert a.concentric_start == b.concentric_start
        assert a.concentric_end == b.concentric_end
        assert a.mcv_mps == b.mcv_mps


@pytest.mark.parametrize("name", ["hip_thrust", "squat"])
def test_streaming_in_small_batches_gives_the_batch_answer(name: str) -> None:
    whole = imu_motion(name)
    batch = detect_reps(whole, name, load_kg=100.0)
    detector = RepDetector(name, load_kg=100.0)
    rng = np.random.default_rng(2)
    streamed: list[Rep] = []
    i = 0
    while i < len(whole.t):
        k = int(rng.integers(10, 21))
        piece = VerticalMotion(
            whole.t[i : i + k],
            whole.velocity[i : i + k],
            whole.position[i : i + k],
            whole.at_rest[i : i + k],
            proxy=None if whole.proxy is None else whole.proxy[i : i + k],
        )
        new = detector.update(piece)
        for rep in new:  # told as soon as it has ended
            assert whole.t[min(i + k, len(whole.t)) - 1] - rep.t_end < 1.6
        streamed += new
        i += k
    streamed += detector.flush()
    assert len(streamed) == len(batch)
    for a, b in zip(streamed, batch, strict=True):
        assert a.index == b.index
        assert a.partial == b.partial
        assert a.t_start == pytest.approx(b.t_start, abs=1e-9)
        assert a.t_end == pytest.approx(b.t_end, abs=1e-9)
        assert a.mcv_mps == pytest.approx(b.mcv_mps, abs=1e-9)
        assert a.mean_power_w == pytest.approx(b.mean_power_w, abs=1e-6)


@pytest.mark.parametrize("rate", [100.0, 400.0])
def test_other_sample_rates_count_the_same(rate: float) -> None:
    traj = trajectory("hip_thrust", 1)
    reps = detect_reps(imu_motion("hip_thrust", 1, rate), "hip_thrust")
    f1, rmse = scored(reps, traj.truth.reps)
    assert f1 == 1.0
    assert rmse["mcv_mps"] < 0.025


def synthetic(
    moves: list[tuple[float, float, float]], end: float, rate: float = 200.0
) -> VerticalMotion:
    """Min-jerk vertical moves (start s, duration s, rise m), still in between."""
    t = np.arange(0.0, end, 1.0 / rate)
    z = np.zeros_like(t)
    v = np.zeros_like(t)
    for t0, duration, rise in moves:
        u = np.clip((t - t0) / duration, 0.0, 1.0)
        z += rise * u**3 * (10 - 15 * u + 6 * u**2)
        v += rise / duration * 30 * u**2 * (1 - u) ** 2
    return VerticalMotion(t, v, z, v == 0.0)


def test_known_answers_on_a_synthetic_hip_thrust_set() -> None:
    moves = []
    t = 1.0
    roms = [0.25, 0.25, 0.25, 0.1, 0.25]
    for rom in roms:
        moves += [(t, 0.5, rom), (t + 1.2, 1.0, -rom)]
        t += 3.0
    reps = detect_reps(synthetic(moves, t + 2.0), "hip_thrust", load_kg=80.0)
    assert [r.partial for r in reps] == [False, False, False, True, False]
    for rep, rom, k in zip(reps, roms, range(5), strict=True):
        assert rep.rom_m == pytest.approx(rom, rel=0.01)
        assert rep.concentric_start == pytest.approx(1.0 + 3 * k, abs=0.01)
        assert rep.concentric_s == pytest.approx(0.5, rel=0.04)
        assert rep.mcv_mps == pytest.approx(rom / 0.5, rel=0.04)
        assert rep.peak_velocity_mps == pytest.approx(1.875 * rom / 0.5, rel=0.01)
        assert rep.lockout_hold_s == pytest.approx(0.7, abs=0.04)
        assert rep.eccentric_s == pytest.approx(1.0, rel=0.04)
        # Mean of m (g + a) v over a min-jerk rise: m g (rise / T) plus a small inertial term.
        assert rep.mean_power_w == pytest.approx(80.0 * G * rom / 0.5, rel=0.05)


def test_reps_that_shrink_through_a_set_are_not_partial() -> None:
    # Real sets shrink as the lifter tires: the last reps two thirds of the range of
    # the ones before, and counted by the lifter; a rep stopped half-way is partial.
    moves, t = [], 1.0
    roms = [0.25, 0.25, 0.24, 0.22, 0.2, 0.16, 0.1]
    for rom in roms:
        moves += [(t, 0.5, rom), (t + 1.2, 1.0, -rom)]
        t += 3.0
    reps = detect_reps(synthetic(moves, t + 2.0), "hip_thrust")
    assert [r.partial for r in reps] == [False] * 6 + [True]


def test_the_partial_rep_reference_is_the_set_as_the_set_gap_draws_it() -> None:
    # Full reps, a 20 s rest, then a set of shorter reps (another lifter's depth, a
    # lighter variation). With a set gap of 45 s the rest is inside one set and the
    # short reps look partial next to the long ones; with a gap of 10 s they begin a
    # set of their own, and are judged against each other.
    moves, t = [], 1.0
    for rom in [0.3] * 3:
        moves += [(t, 0.5, rom), (t + 1.2, 1.0, -rom)]
        t += 3.0
    t += 20.0
    for rom in [0.12] * 3:
        moves += [(t, 0.5, rom), (t + 1.2, 1.0, -rom)]
        t += 3.0
    motion = synthetic(moves, t + 2.0)
    one_set = RepDetector("hip_thrust")
    two_sets = RepDetector("hip_thrust", set_gap_s=10.0)
    assert [r.partial for r in one_set.update(motion) + one_set.flush()] == [False] * 3 + [True] * 3
    assert [r.partial for r in two_sets.update(motion) + two_sets.flush()] == [False] * 6
    with pytest.raises(ValueError, match="set_gap_s"):
        RepDetector("squat", set_gap_s=0.0)


def _with_proxy(integral: VerticalMotion, truth: VerticalMotion) -> VerticalMotion:
    """The integral's motion, with the true height as its drift-free proxy."""
    return replace(integral, proxy=truth.position)


def test_a_slow_descent_the_integral_lost_is_found_by_the_proxy() -> None:
    # Romanian deadlifts lowered over 4 s: on a real bar IMU the descent's few hundredths
    # of a g drown in the tilt's leak and its integral stays flat, while the proxy of
    # the turnarounds still goes down. Here the integral has only the rises.
    down_s, up_s, rom = 4.0, 1.0, 0.35
    moves, rises, t = [], [], 1.0
    for _ in range(4):
        moves += [(t, down_s, -rom), (t + down_s, up_s, rom)]
        rises.append((t + down_s, up_s, rom))
        t += down_s + up_s + 1.0
    truth, integral = synthetic(moves, t + 1.0), synthetic(rises, t + 1.0)
    assert detect_reps(integral, "romanian_deadlift") == []  # the integral alone: none
    reps = detect_reps(_with_proxy(integral, truth), "romanian_deadlift")
    # The first descent has no rise before it to fix where it starts: three of four.
    assert len(reps) == 3
    for k, rep in enumerate(reps, start=1):
        assert rep.concentric_start == pytest.approx(1.0 + k * 6.0 + down_s, abs=0.05)
        assert rep.rom_m == pytest.approx(rom, rel=0.02)
        assert not rep.partial
        # The descent, lost to the integral, is taken from the rise before to this one.
        assert rep.eccentric_start == pytest.approx(rep.concentric_start - down_s - 1.0, abs=0.05)


def test_a_descent_that_slows_to_the_bottom_is_one_descent() -> None:
    # The integral sees a squat's first 10 cm down and then nothing for 3.5 s, longer
    # than any pause at the bottom, while the proxy shows the bar going on down.
    moves, seen, t = [], [], 1.0
    for _ in range(3):
        moves += [(t, 0.5, -0.1), (t + 0.5, 3.5, -0.3), (t + 4.0, 1.0, 0.4)]
        seen += [(t, 0.5, -0.1), (t + 4.0, 1.0, 0.4)]
        t += 6.5
    truth, integral = synthetic(moves, t + 2.0), synthetic(seen, t + 2.0)
    reps = detect_reps(_with_proxy(integral, truth), "squat")
    assert len(reps) == 3
    for k, rep in enumerate(reps):
        assert rep.eccentric_start == pytest.approx(1.0 + 6.5 * k, abs=0.05)
        assert rep.concentric_start == pytest.approx(5.0 + 6.5 * k, abs=0.05)
        assert rep.rom_m == pytest.approx(0.4, rel=0.02)


def test_footsteps_and_small_moves_are_not_reps() -> None:
    # A walk: 2 Hz bounces of 3 cm, a 1 s stop while turning (not still), more bounces.
    t = np.arange(0.0, 12.0, 0.005)
    walking = ((t > 1) & (t < 5)) | ((t > 6) & (t < 10))
    z = np.where(walking, 0.03 * np.sin(2 * np.pi * 2.0 * t), 0.0)
    v = np.where(walking, 0.03 * 2 * np.pi * 2.0 * np.cos(2 * np.pi * 2.0 * t), 0.0)
    at_rest = (t < 1) | (t > 10)
    assert detect_reps(VerticalMotion(t, v, z, at_rest), "bodyweight_hip_thrust") == []
    # A 5 cm lift of the bar (unracking) is too small for a squat.
    small = synthetic([(1.0, 0.7, 0.05), (3.0, 0.7, -0.05)], 5.0)
    assert detect_reps(small, "squat") == []
    # Standing up from the floor travels far more than any hip thrust.
    stand = synthetic([(1.0, 1.8, 0.8), (4.0, 1.8, -0.8)], 7.0)
    assert detect_reps(stand, "bodyweight_hip_thrust") == []


def test_unknown_exercise_and_bad_load_are_refused() -> None:
    with pytest.raises(ValueError, match="bench_press"):
        RepDetector("bench_press")
    with pytest.raises(ValueError, match="load_kg"):
        RepDetector("squat", load_kg=-5.0)
    assert RepDetector("squat").update(VerticalMotion.empty()) == []


def test_a_long_rest_holds_no_more_samples_than_a_short_one() -> None:
    # A hub left streaming between sets or sessions sees long rests (v = 0): the
    # detector must not keep their samples. Memory held after 1 and after 10 minutes.
    rate, per_batch = 200.0, 19
    detector = RepDetector("hip_thrust")
    lift = imu_motion("hip_thrust")
    assert len(detector.update(lift)) > 0
    t0, z = float(lift.t[-1]), float(lift.position[-1])

    def rest(seconds: float) -> None:
        nonlocal t0
        for _ in range(int(seconds * rate / per_batch)):
            t = t0 + np.arange(1, per_batch + 1) / rate
            t0 = float(t[-1])
            still = VerticalMotion(
                t, np.zeros(per_batch), np.full(per_batch, z), np.ones(per_batch, bool)
            )
            assert detector.update(still) == []

    tracemalloc.start()
    try:
        rest(60.0)
        after_one = tracemalloc.get_traced_memory()[0]
        rest(540.0)
        after_ten = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Nine more minutes of samples would be 3.5 MB (four float arrays at 200 Hz).
    assert after_ten - after_one < 100_000


def test_every_exercise_a_user_may_name_has_limits() -> None:
    # The configuration, MQTT commands and CLI check names against EXERCISES.
    assert tuple(EXERCISE_LIMITS) == EXERCISES
