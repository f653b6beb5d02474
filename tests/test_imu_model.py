"""IMU and bar-velocity sensor error models against their datasheet figures."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from scipy.integrate import trapezoid

from firmware_protocol.virtual.imu_model import (
    BMI270,
    GYMAWARE_LIKE,
    ICM42688P,
    IMU_PARTS,
    LSM6DSO,
    MPU6050,
    BarSensorSimulator,
    ImuSimulator,
    ImuSpec,
    random_mounting,
)
from firmware_protocol.virtual.motion import Trajectory, quat_rotate
from firmware_protocol.virtual.physiology import Lifter
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


# --- every part against its datasheet --------------------------------------------------------


def long_still(rate: float, seconds: float = 400.0) -> np.ndarray:
    # Before the scenario starts every body rests in its start pose, for as long as asked.
    return np.arange(-seconds, -0.01, 1 / rate)


@pytest.mark.parametrize("spec", IMU_PARTS, ids=lambda s: s.name)
@pytest.mark.parametrize("slot", [0, 2, 4])
def test_still_noise_is_the_datasheet_density_over_half_the_odr(spec: ImuSpec, slot: int) -> None:
    odr = spec.odr_hz[slot]
    sim = ImuSimulator(traj("deadlift"), "bar", spec=spec, rng=np.random.default_rng(slot))
    accel, gyro = sim.measure_si(long_still(odr), odr_hz=odr)
    # Differences cancel the offset; white noise's variance doubles in them, and the slow
    # drift adds its own small step (the cheap part's, at a low rate, is not negligible).
    accel_std = np.std(np.diff(accel, axis=0), axis=0) / math.sqrt(2)
    gyro_std = np.std(np.diff(gyro, axis=0), axis=0) / math.sqrt(2)
    step = 1 - math.exp(-1 / odr / spec.bias_correlation_s)
    density_accel = spec.accel_noise_density_ug_per_rthz * 1e-6 * G
    density_gyro = math.radians(spec.gyro_noise_density_dps_per_rthz)
    drift_accel = spec.accel_bias_instability_mg * 1e-3 * G
    drift_gyro = math.radians(spec.gyro_bias_instability_dps)
    expected_accel = math.sqrt(density_accel**2 * odr / 2 + drift_accel**2 * step)
    expected_gyro = math.sqrt(density_gyro**2 * odr / 2 + drift_gyro**2 * step)
    assert accel_std == pytest.approx([expected_accel] * 3, rel=0.08)
    assert gyro_std == pytest.approx([expected_gyro] * 3, rel=0.08)
    # The datasheet figure alone accounts for the noise within a few percent but there.
    assert density_gyro * math.sqrt(odr / 2) > 0.75 * expected_gyro


def test_cheap_part_offsets_and_drift_are_its_datasheet_tolerances() -> None:
    parts = [
        ImuSimulator(traj("squat"), "bar", spec=MPU6050, rng=np.random.default_rng(s))
        for s in range(300)
    ]
    gyro = np.degrees(np.array([p.gyro_bias for p in parts]))
    accel = np.array([p.accel_bias for p in parts]) / (1e-3 * G)
    assert np.std(gyro) == pytest.approx(20.0, rel=0.1)  # ±20 °/s initial ZRO tolerance
    assert np.std(accel[:, :2]) == pytest.approx(50.0, rel=0.1)  # ±50 mg x and y
    assert np.std(accel[:, 2]) == pytest.approx(80.0, rel=0.15)  # ±80 mg z
    gains = np.array([np.diag(p.accel_matrix) for p in parts])
    assert np.std(gains) == pytest.approx(0.03, rel=0.1)  # ±3 % sensitivity tolerance
    # The in-run drift stays within a few times its modelled 1 sigma over a session.
    sim = ImuSimulator(traj("squat"), "bar", spec=MPU6050, rng=np.random.default_rng(3))
    _, still = sim.measure_si(long_still(50.0, 600.0), odr_hz=50.0)
    drift = still - sim.gyro_bias
    assert np.abs(drift.mean(axis=0)).max() < 4 * math.radians(MPU6050.gyro_bias_instability_dps)
    assert np.ptp(drift[::50], axis=0).max() > 0.1 * math.radians(MPU6050.gyro_bias_instability_dps)


@pytest.mark.parametrize("spec", IMU_PARTS, ids=lambda s: s.name)
@pytest.mark.parametrize(("accel_range", "gyro_range"), [(2, 250), (16, 2000)])
def test_counts_are_steps_of_the_full_scale_over_32768(
    spec: ImuSpec, accel_range: int, gyro_range: int
) -> None:
    sim = ImuSimulator(traj("hip_thrust"), "bar", spec=spec, rng=np.random.default_rng(7))
    again = ImuSimulator(traj("hip_thrust"), "bar", spec=spec, rng=np.random.default_rng(7))
    t = np.arange(0.0, 20.0, 1 / 100)
    accel, gyro = sim.measure(t, accel_range_g=accel_range, gyro_range_dps=gyro_range, odr_hz=100)
    accel_si, gyro_si = again.measure_si(t, odr_hz=100)
    accel_step = accel_range * G / 32768
    gyro_step = math.radians(gyro_range) / 32768
    # Rounded to the nearest count: never more than half a step off.
    assert np.abs(accel * accel_step - accel_si).max() <= 0.5 * accel_step + 1e-12
    assert np.abs(gyro * gyro_step - gyro_si).max() <= 0.5 * gyro_step + 1e-12


def test_a_still_part_reads_levels_one_count_apart() -> None:
    # One count is the full scale over 32768: 0.49 mg at ±16 g, three times the
    # ICM-42688-P's noise at 12.5 Hz, so a still part reads a few neighbouring levels. At
    # ±2 g a count is 0.061 mg and the counts scatter by the noise itself.
    sim = ImuSimulator(traj("deadlift"), "bar", spec=ICM42688P, rng=np.random.default_rng(8))
    coarse, _ = sim.measure(long_still(12.5, 60.0) - 10.0, accel_range_g=16, gyro_range_dps=2000)
    for axis in range(3):
        levels = np.unique(coarse[:, axis])
        assert 2 <= len(levels) <= 6
        assert np.all(np.diff(levels) == 1)
    t = np.arange(-9.0, -0.01, 0.01)
    fine, _ = sim.measure(t, accel_range_g=2, gyro_range_dps=2000, odr_hz=100)
    sigma = ICM42688P.accel_noise_density_ug_per_rthz * 1e-6 * math.sqrt(50) * 32768 / 2
    assert np.std(np.diff(fine.astype(float), axis=0), axis=0) / math.sqrt(2) == pytest.approx(
        [sigma] * 3, rel=0.1
    )


def test_output_is_the_mean_over_one_output_period() -> None:
    # An error-free part at 12.5 Hz on a shaky lifter's bar reports the specific force and
    # the rate averaged over each 80 ms period: the 8-12 Hz tremor mostly averages out
    # instead of folding down whole, as point samples of it would.
    ideal = ImuSpec("ideal", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 300.0, 0.0, 0.0, 0.0, 0.0)
    shaky = Lifter(tremor_mps2=0.1, tremor_radps=0.01)
    odr = 12.5
    t = np.arange(1.0, 30.0, 1 / odr)
    out, point = {}, {}
    for lifter in (None, shaky):
        tr = Trajectory.from_scenario(Scenario.preset("squat"), 5, lifter=lifter)
        out[lifter] = ImuSimulator(tr, "bar", spec=ideal, rng=np.random.default_rng(0)).measure_si(
            t, odr_hz=odr
        )
        fine = (t[:, None] + np.linspace(-0.5, 0.5, 801)[None, :] / odr).reshape(-1)
        st = tr.state("bar", fine)
        conj = np.array([1.0, -1.0, -1.0, -1.0])
        body = quat_rotate(st.orientation * conj, st.acceleration + np.array([0.0, 0.0, G]))
        mean_force = trapezoid(body.reshape(t.size, 801, 3), axis=1) / 800
        mean_rate = trapezoid(st.angular_velocity.reshape(t.size, 801, 3), axis=1) / 800
        assert np.abs(out[lifter][0] - mean_force).max() < 0.03
        assert np.abs(out[lifter][1] - mean_rate).max() < 0.01
        at = tr.state("bar", t)
        point[lifter] = quat_rotate(at.orientation * conj, at.acceleration + np.array([0, 0, G]))
    tremor_seen = np.std(out[shaky][0] - out[None][0])
    tremor_point = np.std(point[shaky] - point[None])
    assert tremor_seen < 0.5 * tremor_point


def test_parts_list_their_rates_and_ranges() -> None:
    assert [p.name for p in IMU_PARTS] == ["BMI270", "LSM6DSO", "MPU-6050", "ICM-42688-P"]
    for part in IMU_PARTS:
        assert any(12.5 <= r <= 30 for r in part.odr_hz)
        assert any(r == pytest.approx(200, rel=0.05) for r in part.odr_hz) or 208.0 in part.odr_hz
        assert {2, 16} <= set(part.accel_ranges_g)
        assert {250, 2000} <= set(part.gyro_ranges_dps)
    with pytest.raises(ValueError, match="MPU-6050 supports"):
        ImuSimulator(traj("squat"), "bar", spec=MPU6050, rng=np.random.default_rng(0)).measure(
            np.array([1.0]), accel_range_g=2, gyro_range_dps=125
        )
