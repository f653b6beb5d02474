"""Vertical velocity from the IMU against the exact kinematics of the motion model."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from firmware_protocol.virtual.imu_model import ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.analysis.evaluate import corpus, score_item
from sensorhub.analysis.velocity import (
    MotionSettings,
    VerticalMotion,
    VerticalVelocityEstimator,
    transducer_motion,
    vertical_motion,
)

G = 9.80665
PRESETS = ("hip_thrust", "bodyweight_hip_thrust", "squat", "deadlift")


@cache
def recording(
    name: str, seed: int = 1, rate: float = 200.0
) -> tuple[Trajectory, np.ndarray, np.ndarray, np.ndarray]:
    """A preset measured by the lift body's IMU, worn at a random angle, as int16 counts."""
    traj = Trajectory.from_scenario(Scenario.preset(name), seed)
    rng = np.random.default_rng([seed, 99])
    t = np.arange(0.0, traj.duration_s, 1.0 / rate)
    sim = ImuSimulator(traj, traj.lift_body, mounting=random_mounting(rng), rng=rng)
    accel, gyro = sim.measure(t, accel_range_g=16, gyro_range_dps=2000, odr_hz=rate)
    return (
        traj,
        t,
        accel * (16 * G / 32768),
        gyro * (math.radians(2000) / 32768),
    )


@cache
def motion(name: str, seed: int = 1, rate: float = 200.0) -> VerticalMotion:
    _, t, accel, gyro = recording(name, seed, rate)
    return vertical_motion(t, accel, gyro, rate)


def concentric_mask(traj: Trajectory, t: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(t), dtype=bool)
    for rep in traj.truth.reps:
        inside |= (t >= rep.concentric_start) & (t <= rep.concentric_end)
    return inside


@pytest.mark.parametrize("name", PRESETS)
def test_velocity_follows_the_true_vertical_velocity_through_every_concentric(name: str) -> None:
    traj, t, _, _ = recording(name)
    m = motion(name)
    truth = traj.state(traj.lift_body, t).velocity[:, 2]
    inside = concentric_mask(traj, t)
    error = m.velocity[inside] - truth[inside]
    # Measured: 0.0025 (hip thrust), 0.014 (bodyweight), 0.076 (squat), 0.005 (deadlift).
    # The squat's is the last rep of each set: held at lockout and then walked back to
    # the rack, its top turn is placed a few hundredths of a second early and its hold
    # is not taken for rest, so its concentric comes out short (a known weakness; moving
    # the turn to where the body stops fixed it here but lost sets on real recordings).
    bound = {"squat": (0.09, 0.3)}.get(name, (0.02, 0.06))
    assert math.sqrt(float(np.mean(error**2))) < bound[0]
    assert np.abs(error).max() < bound[1]


@pytest.mark.parametrize("name", PRESETS)
def test_rest_is_only_claimed_where_the_body_is_still_and_found_where_it_is(name: str) -> None:
    traj, t, _, _ = recording(name)
    m = motion(name)
    state = traj.state(traj.lift_body, t)
    speed = np.abs(state.velocity[:, 2])
    assert speed[m.at_rest].max() < 0.01
    assert np.all(m.velocity[m.at_rest] == 0.0)
    still = (
        (speed < 1e-4)
        & (np.linalg.norm(state.angular_velocity, axis=1) < 1e-3)
        & (np.linalg.norm(state.acceleration, axis=1) < 1e-3)
    )
    # Rest is a hint, never required: it is claimed only where the body is still, over
    # most of the still time (measured 0.89, 0.68, 0.87, 0.91 of it).
    assert m.at_rest[still].mean() > 0.6


def test_height_change_of_each_rep_matches_its_range_of_motion() -> None:
    traj = recording("squat")[0]
    m = motion("squat")
    last = {(s.index, s.reps + s.partial_reps) for s in traj.truth.sets}
    last |= {(s.index, s.reps) for s in traj.truth.sets}  # the last full one, too
    for rep in traj.truth.reps:
        z0, z1 = np.interp([rep.concentric_start, rep.concentric_end], m.t, m.position)
        # A set's last rep, before the walk back to the rack, comes out short (see the
        # velocity test above): measured 9-16 cm.
        tolerance = 0.2 if (rep.set_index, rep.rep_index) in last else 0.03
        assert z1 - z0 == pytest.approx(rep.rom_m, abs=tolerance)


@pytest.mark.parametrize("name", ["hip_thrust", "squat"])
def test_streaming_in_small_batches_gives_the_batch_answer(name: str) -> None:
    _, t, accel, gyro = recording(name)
    whole = motion(name)
    estimator = VerticalVelocityEstimator(200.0)
    rng = np.random.default_rng(5)
    parts = []
    i = 0
    while i < len(t):
        k = int(rng.integers(10, 21))
        parts.append(estimator.update(t[i : i + k], accel[i : i + k], gyro[i : i + k]))
        i += k
    parts.append(estimator.flush())
    streamed = VerticalMotion.concatenate(parts)
    assert np.array_equal(streamed.t, t)
    assert np.array_equal(streamed.at_rest, whole.at_rest)
    # The proxy is filtered over a sliding window of the stream, so a turn may land a
    # sample apart: measured 1.5 mm/s and 2 mm at most.
    assert np.allclose(streamed.velocity, whole.velocity, atol=0.005)
    assert np.allclose(streamed.position, whole.position, atol=0.005)
    # Output is held back only while a movement is unfinished.
    assert max(len(p) for p in parts) < 0.25 * len(t)


def test_turns_remembered_from_the_last_block_are_the_ones_worked_out_again() -> None:
    # Each block finds the turns of the whole buffer; a turn whose samples are the same
    # as at the last block is taken from then. Forgetting every time must change nothing.
    _, t, accel, gyro = recording("squat")
    remembering, forgetting = VerticalVelocityEstimator(200.0), VerticalVelocityEstimator(200.0)
    out: dict[str, list[VerticalMotion]] = {"remembering": [], "forgetting": []}
    remembered = 0
    for i in range(0, len(t), 19):
        batch = t[i : i + 19], accel[i : i + 19], gyro[i : i + 19]
        out["remembering"].append(remembering.update(*batch))
        remembered += len(remembering._refined)
        forgetting._refined = {}
        out["forgetting"].append(forgetting.update(*batch))
    out["remembering"].append(remembering.flush())
    out["forgetting"].append(forgetting.flush())
    assert remembered > 0  # it did remember
    a, b = (VerticalMotion.concatenate(parts) for parts in out.values())
    for field in ("t", "velocity", "position", "at_rest"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("rate", [100.0, 400.0])
def test_other_sample_rates_work(rate: float) -> None:
    traj, t, _, _ = recording("squat", 2, rate)
    m = motion("squat", 2, rate)
    truth = traj.state(traj.lift_body, t).velocity[:, 2]
    inside = concentric_mask(traj, t)
    # Measured 0.075 (100 Hz) and 0.056 (400 Hz): the last rep of a set, as above.
    assert math.sqrt(float(np.mean((m.velocity[inside] - truth[inside]) ** 2))) < 0.09
    assert np.abs(truth[m.at_rest]).max() < 0.01


def test_a_lift_with_an_accelerometer_offset_is_recovered_exactly_enough() -> None:
    # Level sensor, 0.12 m/s² offset on z; still 2 s, a 0.4 m min-jerk rise in 0.8 s, still.
    rate = 200.0
    t = np.arange(0.0, 5.0, 1.0 / rate)
    u = np.clip((t - 2.0) / 0.8, 0.0, 1.0)
    rise, duration = 0.4, 0.8
    z = rise * u**3 * (10 - 15 * u + 6 * u**2)
    v = rise / duration * 30 * u**2 * (1 - u) ** 2
    a = rise / duration**2 * 60 * u * (1 - u) * (1 - 2 * u)
    noise = np.random.default_rng(3).normal(0.0, 0.01, (len(t), 3))
    accel = np.column_stack([np.zeros_like(t), np.zeros_like(t), G + a + 0.12]) + noise
    gyro = np.random.default_rng(4).normal(0.0, 0.002, (len(t), 3)) + 0.01
    m = vertical_motion(t, accel, gyro, rate)
    assert np.abs(m.velocity - v).max() < 0.01
    assert m.position[-1] - m.position[int(1.5 * rate)] == pytest.approx(rise, abs=0.005)
    assert m.at_rest[t < 1.8].mean() > 0.9
    assert m.at_rest[t > 3.0].mean() > 0.9
    assert not m.at_rest[(t > 2.02) & (t < 2.78)].any()
    assert np.allclose(m.position[:10], z[:10], atol=1e-9)


@pytest.mark.parametrize("index", [5, 7])
def test_a_session_started_in_the_rest_before_the_first_rep_measures_it_right(
    index: int,
) -> None:
    # A live session starts whenever it is started. The AHRS left to its initialisation
    # (3 s) over the first rep ended tenths of a m/s² off in the vertical: the first rep's
    # MCV came out 0.19 and 0.25 m/s low in these two scenarios; levelled on the first
    # still moment it is measured as well as from the recording's start.
    item = corpus(10, seed=1, kind="clean")[index]
    assert item.exercise == "bodyweight_hip_thrust"
    live = np.abs(score_item(item, 200.0, live=True).mcv_errors)
    whole = np.abs(score_item(item, 200.0).mcv_errors)
    # Measured (scenario 7): live, 15 of the 16 reps matched, every one within 0.034 m/s;
    # from the recording's start all 16, but the opening bridge joins the first rep and
    # puts it 0.58 m/s off.
    assert len(live) >= len(whole) - 1
    assert live.max() < 0.05, live[:3]
    assert live[0] < whole[0] + 0.01


def test_transducer_samples_pass_through() -> None:
    t = np.arange(0.0, 1.0, 0.01)
    position = 0.1 * np.sin(t)
    velocity = np.where(t < 0.5, 0.005, 0.3)
    m = transducer_motion(t, position, velocity)
    assert np.array_equal(m.position, position)
    assert np.array_equal(m.velocity, velocity)
    assert np.array_equal(m.at_rest, t < 0.5)
    assert m.velocity_noise_mps > 0
    with pytest.raises(ValueError, match="differ in length"):
        transducer_motion(t, position[:-1], velocity)


def test_bad_input_is_refused_with_the_reason() -> None:
    estimator = VerticalVelocityEstimator(200.0)
    with pytest.raises(ValueError, match="differ in length"):
        estimator.update(np.zeros(3), np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="swing_m"):
        MotionSettings(swing_m=0.0)
    with pytest.raises(ValueError, match="sample rate"):
        VerticalVelocityEstimator(0.5)
    assert len(estimator.update(np.empty(0), np.empty((0, 3)), np.empty((0, 3)))) == 0
    assert len(VerticalVelocityEstimator(100.0).flush()) == 0
