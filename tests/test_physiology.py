"""The lifter's tremor, sway and bar ringing: real-world spreads, exact kinematics."""

from __future__ import annotations

import itertools
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid

from firmware_protocol.virtual.imu_model import BMI270, ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory, quat_multiply
from firmware_protocol.virtual.physiology import STILL, GainProfile, Lifter
from firmware_protocol.virtual.scenario import Scenario, SetPlan

G = 9.80665
TYPICAL = Lifter(
    tremor_mps2=0.06, tremor_radps=0.0072, sway_m=0.0045, sway_deg=0.6, touchdown_mps2=5.0
)
SHAKY = Lifter(tremor_mps2=0.1, tremor_radps=0.0095, sway_m=0.01, sway_deg=1.2, touchdown_mps2=8)
# Real recordings of a held bar, per accelerometer axis and gyroscope axis over 0.1 s.
REAL_ACCEL_SPREAD = (0.1, 0.3)
REAL_GYRO_SPREAD = (0.015, 0.025)


def held_squats() -> Scenario:
    """Squats with long lockouts: the bar on the back, held still for 3 s at a time."""
    plan = SetPlan(
        reps=4,
        load_kg=100.0,
        concentric_s=1.0,
        eccentric_s=1.5,
        lockout_hold_s=3.0,
        bottom_pause_s=0.2,
        rom_m=0.5,
        rest_before_s=10.0,
    )
    return Scenario(name="held", exercise="squat", sets=(plan,), disturbances=False)


def hold_spread(lifter: Lifter | None, seed: int = 0, rate: float = 100.0) -> tuple[float, float]:
    """Median spread (max - min) per axis over 0.1 s of a BMI270 in the lockouts."""
    traj = Trajectory.from_scenario(held_squats(), seed, lifter=lifter)
    rng = np.random.default_rng(seed)
    sim = ImuSimulator(traj, "bar", spec=BMI270, mounting=random_mounting(rng), rng=rng)
    t = np.arange(0.0, traj.duration_s, 1 / rate)
    accel, gyro = sim.measure_si(t, odr_hz=rate)
    n = round(0.1 * rate)
    spreads_a, spreads_g = [], []
    for rep in traj.truth.reps:
        inside = np.flatnonzero((t > rep.lockout_start + 0.5) & (t < rep.lockout_end - 0.5))
        for i in range(inside[0], inside[-1] - n, n):
            spreads_a.append(np.ptp(accel[i : i + n], axis=0))
            spreads_g.append(np.ptp(gyro[i : i + n], axis=0))
    return float(np.median(spreads_a)), float(np.median(spreads_g))


@cache
def preset(name: str, lifter: Lifter | None = SHAKY, seed: int = 11) -> Trajectory:
    return Trajectory.from_scenario(Scenario.preset(name), seed, lifter=lifter)


def test_a_held_bar_spreads_as_real_recordings_do() -> None:
    accel, gyro = hold_spread(TYPICAL)
    assert REAL_ACCEL_SPREAD[0] <= accel <= REAL_ACCEL_SPREAD[1]
    assert REAL_GYRO_SPREAD[0] <= gyro <= REAL_GYRO_SPREAD[1]
    # The same hold without a person is the part's white noise alone, far quieter.
    still_accel, still_gyro = hold_spread(None)
    assert still_accel < 0.4 * REAL_ACCEL_SPREAD[0]
    assert still_gyro < 0.3 * REAL_GYRO_SPREAD[0]


def test_random_lifters_span_calm_to_shaky_inside_the_real_range() -> None:
    rng = np.random.default_rng(5)
    spreads = np.array([hold_spread(Lifter.random(rng), seed) for seed in range(12)])
    accel, gyro = spreads[:, 0], spreads[:, 1]
    # Every one inside the real range (with a little room for the draw's own spread) ...
    assert accel.min() >= 0.8 * REAL_ACCEL_SPREAD[0]
    assert accel.max() <= 1.1 * REAL_ACCEL_SPREAD[1]
    assert gyro.min() >= 0.75 * REAL_GYRO_SPREAD[0]
    assert gyro.max() <= 1.15 * REAL_GYRO_SPREAD[1]
    # ... and the corpus reaches from its calm end to its shaky end.
    assert accel.min() < 0.13
    assert accel.max() > 0.2
    assert gyro.max() - gyro.min() > 0.005


def test_no_hold_is_still_where_a_person_holds_and_a_lone_bar_is() -> None:
    traj = preset("deadlift")
    t = np.arange(0.0, traj.duration_s, 0.005)
    omega = np.linalg.norm(traj.state("bar", t).angular_velocity, axis=1)
    reps = traj.truth.reps
    for rep in reps:  # lockouts: the bar in the hands
        inside = (t > rep.lockout_start) & (t < rep.lockout_end)
        assert omega[inside].min() > 1e-4
    for a, b in itertools.pairwise(reps):  # bottoms: hands on the bar on the floor
        inside = (t > a.eccentric_end + 0.45) & (t < b.concentric_start - 0.4)
        short = b.concentric_start - a.eccentric_end < 3.0  # a rest-pause: it lets go
        if a.set_index == b.set_index and short and inside.any():
            assert omega[inside].min() > 1e-5
    sets = traj.truth.sets
    for a, b in itertools.pairwise(sets):  # between sets nobody touches it
        inside = (t > a.t_end + 1.0) & (t < b.t_start - 3.0)
        lone = inside & ~np.any(
            [(t > d.t_start - 0.5) & (t < d.t_end + 0.5) for d in traj.truth.disturbances],
            axis=0,
        )
        assert lone.any()
        assert omega[lone].max() < 1e-9
    pelvis = preset("hip_thrust").state("pelvis", np.arange(0.2, 2.8, 0.005))
    assert np.linalg.norm(pelvis.angular_velocity, axis=1).min() > 1e-4  # the bridge too


def test_the_plates_ring_at_each_deadlift_touchdown() -> None:
    traj = preset("deadlift", Lifter(touchdown_mps2=8.0))  # the ringing alone
    for rep in traj.truth.reps:
        t = np.arange(rep.eccentric_end - 0.05, rep.eccentric_end + 0.6, 1e-3)
        calm = preset("deadlift", None).state("bar", t).acceleration[:, 2]
        ring = traj.state("bar", t).acceleration[:, 2] - calm
        after = t >= rep.eccentric_end
        peak = np.abs(ring[after]).max()
        assert 0.5 < peak < 12.0  # a few m/s²
        assert np.abs(ring[t > rep.eccentric_end + 0.5]).max() < 0.05 * peak  # dies away
        assert np.abs(ring[~after]).max() == 0.0
        # Its main tone lies in 10-30 Hz (the rattle above it is smaller and shorter).
        spectrum = np.abs(np.fft.rfft(ring * np.hanning(t.size)))
        freq = np.fft.rfftfreq(t.size, 1e-3)
        assert 9.0 <= freq[np.argmax(spectrum)] <= 31.0


@pytest.mark.parametrize(
    ("name", "body"), [("deadlift", "bar"), ("hip_thrust", "pelvis"), ("squat", "bar")]
)
def test_kinematics_with_a_lifter_stay_exact(name: str, body: str) -> None:
    traj = preset(name)
    t = np.arange(-0.5, traj.duration_s + 0.5, 2.5e-4)
    s = traj.state(body, t)  # type: ignore[arg-type]
    v = s.velocity[0] + cumulative_trapezoid(s.acceleration, t, axis=0, initial=0)
    p = s.position[0] + cumulative_trapezoid(s.velocity, t, axis=0, initial=0)
    assert np.abs(v - s.velocity).max() < 2e-3
    assert np.abs(p - s.position).max() < 1e-5
    dt = 1e-3
    t = np.arange(0.0, traj.duration_s, dt)
    q = traj.state(body, t).orientation  # type: ignore[arg-type]
    w = traj.state(body, t + dt / 2).angular_velocity  # type: ignore[arg-type]
    angle = np.linalg.norm(w, axis=1) * dt
    axis = w / np.maximum(np.linalg.norm(w, axis=1), 1e-300)[:, None]
    step = np.concatenate([np.cos(angle / 2)[:, None], np.sin(angle / 2)[:, None] * axis], axis=1)
    err = np.abs(np.sum(quat_multiply(q[:-1], step[:-1]) * q[1:], axis=1))
    assert np.all(1 - err < 1e-10)


def test_a_lifter_changes_the_motion_not_the_schedule() -> None:
    calm, shaky = preset("hip_thrust", None), preset("hip_thrust")
    assert [r.concentric_start for r in shaky.truth.reps] == [
        r.concentric_start for r in calm.truth.reps
    ]
    # MCV moves by the sway's few millimetres over a concentric, no more.
    mcv = np.array(
        [(a.mcv_mps, b.mcv_mps) for a, b in zip(calm.truth.reps, shaky.truth.reps, strict=True)]
    )
    assert np.abs(mcv[:, 0] - mcv[:, 1]).max() < 0.03
    again = Trajectory.from_scenario(Scenario.preset("hip_thrust"), 11, lifter=SHAKY)
    t = np.arange(0.0, 20.0, 0.01)
    assert np.array_equal(again.state("bar", t).acceleration, shaky.state("bar", t).acceleration)
    other = Trajectory.from_scenario(Scenario.preset("hip_thrust"), 12, lifter=SHAKY)
    assert not np.allclose(other.state("bar", t).acceleration, shaky.state("bar", t).acceleration)
    # A still lifter is no lifter at all.
    assert STILL.still
    assert np.array_equal(
        Trajectory.from_scenario(Scenario.preset("squat"), 3, lifter=STILL)
        .state("bar", t)
        .position,
        preset("squat", None, 3).state("bar", t).position,
    )


def test_tilt_stays_near_zero_on_the_swaying_bridge() -> None:
    traj = preset("hip_thrust", TYPICAL)
    tilt = traj.tilt_deg(np.linspace(0.0, traj.scenario.calibration_s, 301))
    assert abs(tilt.mean()) < 0.05  # the neutral is the bridge's mean pose
    assert 0.02 < np.std(tilt) < 1.0


def test_lifters_are_validated_and_drawn_reproducibly() -> None:
    assert Lifter.random(np.random.default_rng(3)) == Lifter.random(np.random.default_rng(3))
    assert Lifter.random(np.random.default_rng(3)) != Lifter.random(np.random.default_rng(4))
    with pytest.raises(ValueError, match=r"Lifter.sway_m = 0.5: allowed 0..0.05"):
        Lifter(sway_m=0.5)
    with pytest.raises(ValueError, match="finite"):
        Lifter(tremor_mps2=float("nan"))


def test_gain_changes_smoothly_between_levels() -> None:
    gain = GainProfile(0.0, [(2.0, 1.0), (1.0, 0.25), (2.1, 0.0)])
    t = np.linspace(0.0, 4.0, 40001)
    g, dg, ddg = gain.evaluate(t)
    assert g[0] == 0.0
    assert g[-1] == 0.0
    assert g[(t > 1.4) & (t < 1.9)] == pytest.approx(0.25)
    assert np.abs(np.gradient(g, t) - dg).max() < 1e-3
    assert np.abs(np.gradient(dg, t) - ddg).max() < 0.1


def test_truth_file_names_the_lifter(tmp_path: Path) -> None:
    traj = preset("bodyweight_hip_thrust")
    path = tmp_path / "truth.jsonl"
    traj.truth.write_jsonl(path, traj, tilt_hz=5.0)
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert header["lifter"] == {
        "tremor_mps2": SHAKY.tremor_mps2,
        "tremor_radps": SHAKY.tremor_radps,
        "sway_m": SHAKY.sway_m,
        "sway_deg": SHAKY.sway_deg,
        "touchdown_mps2": SHAKY.touchdown_mps2,
    }
