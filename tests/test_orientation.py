"""The AHRS wrapper: conventions, streaming equals batch, and quaternion helpers."""

from __future__ import annotations

import numpy as np

from sensorhub.analysis.orientation import (
    G,
    OrientationTracker,
    fuse,
    quat_conjugate,
    quat_multiply,
    quat_rotate,
)


def test_still_sensor_reads_gravity_up_and_no_linear_acceleration() -> None:
    n = 400
    accel = np.tile([0.0, 0.0, G], (n, 1))
    quaternions, earth = fuse(accel, np.zeros((n, 3)), 200.0)
    assert np.allclose(quaternions[-1], [1, 0, 0, 0], atol=1e-6)
    assert np.abs(earth[-50:]).max() < 1e-3


def test_tilted_sensor_converges_to_its_attitude() -> None:
    # Sensor rolled 30° about x: gravity appears in its y-z plane.
    angle = np.radians(30)
    n = 2000
    accel = np.tile([0.0, G * np.sin(angle), G * np.cos(angle)], (n, 1))
    quaternions, earth = fuse(accel, np.zeros((n, 3)), 200.0)
    up_in_earth = quat_rotate(quaternions[-1], accel[-1] / G)
    assert np.allclose(up_in_earth, [0, 0, 1], atol=1e-3)
    assert np.abs(earth[-1]).max() < 0.05


def test_vertical_acceleration_comes_out_in_the_earth_frame() -> None:
    n = 600
    accel = np.tile([0.0, 0.0, G], (n, 1))
    accel[400:, 2] += 2.0  # pushed upwards at 2 m/s²
    _, earth = fuse(accel, np.zeros((n, 3)), 200.0)
    assert abs(earth[-1, 2] - 2.0) < 0.05


def test_streaming_in_batches_equals_one_batch() -> None:
    rng = np.random.default_rng(5)
    n = 1000
    accel = np.tile([0.0, 0.0, G], (n, 1)) + rng.normal(0, 0.3, (n, 3))
    gyro = rng.normal(0, 0.2, (n, 3))
    whole_q, whole_e = fuse(accel, gyro, 400.0)
    tracker = OrientationTracker(400.0)
    parts = [tracker.update(accel[i : i + 17], gyro[i : i + 17]) for i in range(0, n, 17)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), whole_q)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), whole_e)


def test_quaternion_helpers() -> None:
    half = np.radians(90) / 2
    about_z = np.array([np.cos(half), 0, 0, np.sin(half)])
    assert np.allclose(quat_rotate(about_z, np.array([1.0, 0, 0])), [0, 1, 0])
    identity = quat_multiply(about_z, quat_conjugate(about_z))
    assert np.allclose(identity, [1, 0, 0, 0])
