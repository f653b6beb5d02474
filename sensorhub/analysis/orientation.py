"""Sensor orientation by imufusion's AHRS (x-io Fusion), with its state held explicitly.

Conventions used everywhere in the analysis: the earth frame is ENU (x east, y north,
z up); quaternions are (w, x, y, z) rotating the sensor frame into the earth frame;
accelerations are m/s², angular rates rad/s. Without a magnetometer heading drifts
slowly; everything built on this uses only the vertical axis or rotations relative to
a recent reference, which heading drift does not disturb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import imufusion
import numpy as np
import numpy.typing as npt

G: Final = 9.80665
PRIME_S: Final = 3.0
"""Fusion's initialisation period, s: what :meth:`OrientationTracker.prime` spends."""
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FusionSettings:
    """AHRS tuning: the defaults suit a lifter's sensor at 50–800 Hz."""

    gain: float = 0.5
    """Weight of the accelerometer correction (Fusion's recommended 0.5)."""
    acceleration_rejection_deg: float = 10.0
    """Accelerometer ignored while it disagrees with gravity by more (the lift itself)."""
    rejection_timeout_s: float = 5.0
    gyroscope_range_dps: float = 2000.0


@dataclass
class OrientationTracker:
    """Streaming AHRS: feed consecutive batches, get orientation and earth-frame acceleration."""

    sample_rate_hz: float
    settings: FusionSettings = field(default_factory=FusionSettings)
    _ahrs: imufusion.Ahrs = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1.0 <= self.sample_rate_hz <= 10_000.0:
            raise ValueError(f"sample rate {self.sample_rate_hz} Hz is outside 1..10000 Hz")
        self._ahrs = imufusion.Ahrs()
        s = self.settings
        self._ahrs.set_settings(
            imufusion.AhrsSettings(
                sample_rate=self.sample_rate_hz,
                convention=imufusion.CONVENTION_ENU,
                gain=s.gain,
                gyroscope_range=s.gyroscope_range_dps,
                acceleration_rejection=s.acceleration_rejection_deg,
                magnetic_rejection=0.0,
                rejection_timeout=round(s.rejection_timeout_s * self.sample_rate_hz),
            )
        )
        self._ahrs.set_sample_period(1.0 / self.sample_rate_hz)

    def prime(self, accel: FloatArray) -> None:
        """Spend the AHRS's initialisation on a still pose: ``accel`` (3,) its mean, m/s².

        Fusion starts level and converges over its first seconds at a high gain without
        acceleration rejection; fed the still pose for that long it ends levelled on it.
        """
        samples = round(PRIME_S * self.sample_rate_hz)
        self.update(np.broadcast_to(accel, (samples, 3)), np.zeros((samples, 3)))

    def update(self, accel: FloatArray, gyro: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Fuse a batch of samples (n, 3) m/s² and rad/s in the sensor frame.

        Returns the orientation (n, 4) and the earth-frame acceleration with gravity
        removed, (n, 3) m/s², z up.
        """
        n = len(accel)
        # As Python floats: imufusion reads them sooner than numpy rows (same C floats).
        accel_g = (np.asarray(accel, dtype=np.float64) / G).tolist()
        gyro_dps = (np.asarray(gyro, dtype=np.float64) * (180.0 / math.pi)).tolist()
        ahrs = self._ahrs
        update, quaternion, acceleration = (
            ahrs.update_no_magnetometer,
            ahrs.get_quaternion,
            ahrs.get_earth_acceleration,
        )
        # imufusion's C core takes one sample per call. This loop runs for every sample
        # the hub receives: its results are gathered in lists (assigning array rows one by
        # one cost more than the fusion itself).
        quaternions: list[FloatArray] = []
        earth: list[FloatArray] = []
        for gyro_i, accel_i in zip(gyro_dps, accel_g, strict=True):
            update(gyro_i, accel_i)
            quaternions.append(quaternion())
            earth.append(acceleration())
        if n == 0:
            return np.empty((0, 4)), np.empty((0, 3))
        # imufusion hands back float32 rows: joined, then widened (exactly), sooner than
        # np.array works out the shape of a list of arrays.
        earth_si = np.concatenate(earth).astype(np.float64).reshape(n, 3)
        earth_si *= G
        return np.concatenate(quaternions).astype(np.float64).reshape(n, 4), earth_si


def run_lengths(ok: npt.NDArray[np.bool_], carry: int) -> npt.NDArray[np.int64]:
    """Length of the run of True ending at each sample; ``carry`` continues a run before."""
    idx = np.arange(1, len(ok) + 1)
    last_false = np.maximum.accumulate(np.where(ok, 0, idx))
    runs = idx - last_false
    # Samples in the first run continue the run from before the batch.
    head = last_false == 0
    runs[head] += carry
    return runs


STILL_RATE_RAD_S: Final = 0.05
"""Below this angular rate (~3 °/s) a sensor counts as still."""
STILL_ACCEL_M_S2: Final = 1.0
"""A still sensor reads |a| within this of g."""


class StillRun:
    """Where a sensor first holds still: ``length`` consecutive samples whose angular rate
    is under :data:`STILL_RATE_RAD_S` and whose |a| is within :data:`STILL_ACCEL_M_S2`
    of g.

    An AHRS left to its initialisation period (Fusion's first 3 s, at a high gain and
    without acceleration rejection) while the sensor moves ends it degrees off, and the
    rejection then keeps it there until a long rest; levelled on a still run it starts
    right. Feed consecutive batches: the run is counted across them, so it completes at
    the same sample whatever the batching.
    """

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"length = {length}: a run is at least one sample")
        self.length = length
        self.run = 0
        """Still samples at the end of what was fed, while the run is not complete."""

    def feed(self, accel: FloatArray, gyro: FloatArray) -> int | None:
        """Take samples (n, 3) m/s², rad/s; how many of them complete the run, or None.

        On None the last ``min(run, n)`` samples are the run in progress (earlier ones
        too when ``run`` > n).
        """
        still = (vector_norm(gyro, axis=1) < STILL_RATE_RAD_S) & (
            np.abs(vector_norm(accel, axis=1) - G) < STILL_ACCEL_M_S2
        )
        if len(still) == 0:
            return None
        runs = run_lengths(still, self.run)
        reached = np.flatnonzero(runs >= self.length)
        if len(reached):
            self.run = 0
            return int(reached[0]) + 1
        self.run = int(runs[-1])
        return None


def fuse(
    accel: FloatArray,
    gyro: FloatArray,
    sample_rate_hz: float,
    settings: FusionSettings | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Batch form of :class:`OrientationTracker` (the same answers, one call)."""
    tracker = OrientationTracker(sample_rate_hz, settings or FusionSettings())
    return tracker.update(accel, gyro)


def quat_multiply(a: FloatArray, b: FloatArray) -> FloatArray:
    """Hamilton product of quaternions (…, 4) w, x, y, z."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_conjugate(q: FloatArray) -> FloatArray:
    """Conjugate (inverse of a unit quaternion), (…, 4)."""
    conjugate: FloatArray = q * np.array([1.0, -1.0, -1.0, -1.0])
    return conjugate


def vector_norm(v: FloatArray, axis: int = -1, *, keepdims: bool = False) -> FloatArray:
    """Euclidean length along ``axis``; the same numbers as ``np.linalg.norm``, sooner.

    ``np.linalg.norm`` checks its arguments at length; per sensor batch that cost more
    than the arithmetic.
    """
    squares: FloatArray = v * v
    out: FloatArray = np.sqrt(squares.sum(axis=axis, keepdims=keepdims))
    return out


def cross(a: FloatArray, b: FloatArray) -> FloatArray:
    """Cross product of vectors (…, 3), broadcast; the same numbers as ``np.cross``.

    ``np.cross`` spends most of its time setting up (axis moves, broadcasting checks):
    on the few tens of samples of one sensor batch it was the analysis's costliest call.
    """
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    shape = a.shape if a.ndim >= b.ndim else b.shape  # the analysis pairs (n, 3) with (3,)
    if a.shape != b.shape and a.ndim > 1 and b.ndim > 1:
        shape = np.broadcast_shapes(a.shape, b.shape)
    out: FloatArray = np.empty(shape)
    out[..., 0] = a1 * b2 - a2 * b1
    out[..., 1] = a2 * b0 - a0 * b2
    out[..., 2] = a0 * b1 - a1 * b0
    return out


def windows(a: FloatArray, size: int, axis: int = 0) -> FloatArray:
    """Read-only view of the windows of ``size`` along ``axis`` (0 or 1) of ``a``.

    The same view as ``sliding_window_view(a, size, axis=axis)`` (the window is the last
    dimension), which checks its arguments for longer than the per-batch statistics
    built on it take.
    """
    a = np.ascontiguousarray(a)
    if axis not in (0, 1) or axis >= a.ndim:
        raise ValueError(f"axis = {axis}: windows run along axis 0 or 1 of a {a.ndim}-D array")
    count = a.shape[axis] - size + 1
    if count < 0 or size < 1:
        raise ValueError(f"windows of {size} need at least {size} along axis {axis}: {a.shape}")
    shape = (*a.shape[:axis], count, *a.shape[axis + 1 :], size)
    view: FloatArray = np.ndarray(shape, a.dtype, a, 0, (*a.strides, a.strides[axis]))
    view.flags.writeable = False
    return view


def quat_rotate(q: FloatArray, v: FloatArray) -> FloatArray:
    """Rotate vectors (…, 3) by quaternions (…, 4)."""
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * cross(u, v)
    rotated: FloatArray = v + w * t + cross(u, t)
    return rotated
