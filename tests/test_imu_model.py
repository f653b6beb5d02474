"""IMU and bar-velocity sensor error models against their datasheet figures."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from firmware_protocol.virtual.imu_model import (
    BMI270,
    GYMAWARE_LIKE,
    LSM6DSO,
    BarSensorSimulator,
    ImuSimulator,
    ImuSpec,
    random_mounting,
)
from firmware_protocol.virtual.motion import Trajectory, quat_rotate
from firmware_protocol.virtual.scenario import Scenario

G = 9.80665
ODR = 800.0


@cache
def traj(name: str) -> Trajectory:
    return Trajectory.from_scenario(Scenario.preset(name), 5)


def still_times() -> np.ndarray:
    # The calibration bridge of the hip thrust preset: pelvis perfectly still for 3 s.
    return np.arange(0.05, 2.95, 1 / ODR)


@pytest.mark.parametrize("spec", [BMI270, LSM6DSO], ids=lambda s: s.name)
def test_stationary_sensor_sees_gravity_bias_and_datasheet_noise(spec: ImuSpec) -> None:
    sim = ImuSimulator(traj("hip_thrust"), "pelvis", spec=spec, rng=np.random.default_rng(1))
    accel, gyro = sim.measure_si(still_times(), odr_hz=ODR)
    sa, sg = sim.noise_std(ODR)
    assert sa == pytest.approx(spec.accel_noise_density_ug_per_rthz * 1e-6 * G * math.sqrt(400))
    assert sg == pytest.approx(math.radians(spec.gyro_noise_density_dps_per_rthz) * 20.0)
    assert np.std(accel, axis=0) == pytest.approx([sa] * 3, rel=0.1)
    assert np.std(gyro, axis=0) == pytest.approx([sg] * 3, rel=0.1)
    bias_bound = 4 * math.sqrt(3) * spec.accel_bias_mg * 1e-3 * G
    assert abs(np.linalg.norm(accel.mean(axis=0)) - G) < bias_bound + 0.02 * G
    drift = 4 * math.radians(spec.gyro_bias_instability_dps)
    assert np.abs(gyro.mean(axis=0) - sim.gyro_bias).max() < drift + 4 * sg / math.sqrt(2000)
    assert np.abs(sim.gyro_bias).max() > 0  # the part has a zero-rate offset to calibrate


def test_parts_differ_like_the_datasheet_spread() -> None:
    biases = np.array(
        [
            ImuSimulator(traj("squat"), "bar", rng=np.random.default_rng(s)).accel_bias
            for s in range(300)
        ]
    )
    assert np.std(biases) == pytest.approx(BMI270.accel_bias_mg * 1e-3 * G, rel=0.15)


def test_counts_scale_round_and_clip() -> None:
    t = np.arange(0.0, traj("hip_thrust").duration_s, 1 / 200)
    a = ImuSimulator(traj("hip_thrust"), "bar", rng=np.random.default_rng(2))
    b = ImuSimulator(traj("hip_thrust"), "bar", rng=np.random.default_rng(2))
    acc_si, gyr_si = a.measure_si(t, odr_hz=200)
    acc, gyr = b.measure(t, accel_range_g=16, gyro_range_dps=125, odr_hz=200)
    assert acc.dtype == np.int16
    assert gyr.dtype == np.int16
    assert np.abs(acc - acc_si * 32768 / (16 * G)).max() <= 0.5
    # Rolling the loaded bar onto the hips spins it faster than 125 °/s: the part saturates.
    raw = gyr_si * 32768 / math.radians(125)
    assert np.abs(raw).max() > 32768
    assert gyr.max() == 32767 or gyr.min() == -32768
    inside = np.abs(raw) < 32000
    assert np.abs(gyr[inside] - raw[inside]).max() <= 0.5
    with pytest.raises(ValueError, match="accel_range_g"):
        b.measure(t[-1:] + 1, accel_range_g=3, gyro_range_dps=125)


def test_mounting_rotates_gravity_into_the_sensor_frame() -> None:
    # At the start of the deadlift the bar lies level on the floor: body frame = world frame.
    t = np.arange(0.0, 0.9, 1 / ODR)
    q = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])  # 90° about x
    sim = ImuSimulator(traj("deadlift"), "bar", mounting=q, rng=np.random.default_rng(3))
    accel, _ = sim.measure_si(t, odr_hz=ODR)
    expected = quat_rotate(q * np.array([1, -1, -1, -1]), np.array([0.0, 0.0, G]))
    assert expected == pytest.approx([0.0, G, 0.0], abs=1e-12)
    assert accel.mean(axis=0) == pytest.approx(expected, abs=0.1 * G)
    m = random_mounting(np.random.default_rng(4))
    assert np.linalg.norm(m) == pytest.approx(1.0)
    assert not np.allclose(m, random_mounting(np.random.default_rng(5)))
    with pytest.raises(ValueError, match="unit quaternion"):
        ImuSimulator(traj("deadlift"), "bar", mounting=np.ones(4), rng=np.random.default_rng(0))


def test_same_seed_same_output_and_batches_equal_one_call() -> None:
    t = np.arange(0.0, 40.0, 1 / 400)
    one = ImuSimulator(traj("squat"), "bar", rng=np.random.default_rng(9))
    acc1, _ = one.measure(t, accel_range_g=8, gyro_range_dps=2000, odr_hz=400)
    again = ImuSimulator(traj("squat"), "bar", rng=np.random.default_rng(9))
    assert np.array_equal(
        acc1, again.measure(t, accel_range_g=8, gyro_range_dps=2000, odr_hz=400)[0]
    )
    chunked = ImuSimulator(traj("squat"), "bar", rng=np.random.default_rng(9))
    parts = [chunked.measure_si(t[i : i + 13], odr_hz=400) for i in range(0, t.size, 13)]
    batch = ImuSimulator(traj("squat"), "bar", rng=np.random.default_rng(9)).measure_si(
        t, odr_hz=400
    )
    assert np.allclose(np.concatenate([p[0] for p in parts]), batch[0], atol=1e-9)
    assert np.allclose(np.concatenate([p[1] for p in parts]), batch[1], atol=1e-9)


def test_times_must_increase() -> None:
    sim = ImuSimulator(traj("squat"), "bar", rng=np.random.default_rng(0))
    sim.measure_si(np.array([1.0, 1.01, 1.02]))
    with pytest.raises(ValueError, match="increase"):
        sim.measure_si(np.array([1.02, 1.03]))
    with pytest.raises(ValueError, match="increase"):
        sim.measure_si(np.array([2.0, 2.0]))
    with pytest.raises(ValueError, match="odr_hz"):
        sim.measure_si(np.array([3.0, 3.1]), odr_hz=0.0)
    # The ODR is inferred from the spacing, including across calls: one-sample batches at
    # 100 Hz are as noisy as the datasheet says for 100 Hz.
    fresh = ImuSimulator(traj("hip_thrust"), "pelvis", rng=np.random.default_rng(0))
    t = np.arange(0.05, 2.95, 0.01)
    _, gyro = zip(*(fresh.measure_si(t[i : i + 1]) for i in range(t.size)), strict=True)
    assert np.std(np.concatenate(gyro), axis=0) == pytest.approx(
        [fresh.noise_std(100)[1]] * 3, rel=0.2
    )


def test_bar_sensor_errors_match_its_spec() -> None:
    tr = traj("squat")
    sim = BarSensorSimulator(tr, rng=np.random.default_rng(6))
    t = np.arange(0.0, tr.duration_s, 1 / 50)
    pos, vel = sim.measure(t)
    true = tr.state("bar", t - GYMAWARE_LIKE.latency_s)
    z0 = tr.state("bar", np.zeros(1)).position[0, 2]
    err_v = vel - sim.scale * true.velocity[:, 2]
    assert np.std(err_v) == pytest.approx(GYMAWARE_LIKE.velocity_noise_mps, rel=0.1)
    assert abs(np.mean(err_v)) < 3 * GYMAWARE_LIKE.velocity_noise_mps / math.sqrt(t.size)
    err_p = pos - sim.scale * (true.position[:, 2] - z0)
    assert np.std(err_p) == pytest.approx(
        math.hypot(GYMAWARE_LIKE.position_noise_m, GYMAWARE_LIKE.position_resolution_m / 12**0.5),
        rel=0.15,
    )
    steps = pos / GYMAWARE_LIKE.position_resolution_m
    assert np.allclose(steps, np.round(steps), atol=1e-6)
    assert abs(sim.scale - 1) < 5 * GYMAWARE_LIKE.scale_error
    # Per-rep MCV from the sensor lands within published LPT accuracy.
    for r in tr.truth.reps:
        tt = np.arange(r.concentric_start, r.concentric_end, 1 / 100)
        assert np.mean(sim.measure(tt)[1]) == pytest.approx(r.mcv_mps, abs=0.03)
    with pytest.raises(ValueError, match="no bar"):
        BarSensorSimulator(traj("bodyweight_hip_thrust"), rng=np.random.default_rng(0))
