"""Pelvic tilt from a pelvis IMU clipped on in any orientation, and per-rep tilt metrics.

Convention (shared with :mod:`firmware_protocol.virtual.motion`): tilt is the sagittal
rotation of the pelvis segment about its mediolateral axis relative to the calibrated
neutral pose, in degrees, POSITIVE = POSTERIOR. It is a global segment angle: in a hip
thrust it includes the rotation that comes with hip extension, so a rep runs from some
20-40° anterior at the bottom to about neutral at lockout.

Method
    1. Neutral window (the athlete holds the neutral bridge still): the mean gyroscope
       reading there is the first gyroscope offset estimate; the mean accelerometer
       reading primes the AHRS (:class:`OrientationTracker`, tuned by
       :data:`TILT_FUSION`), whose quaternion over the window is the neutral ``q_n``.
    2. Every sample: the AHRS quaternion ``q`` gives the up direction seen in the sensor
       frame, ``u = conj(q) (0, 0, 1) q``; ``u_n`` is the same at neutral. A rotation of
       the pelvis by ``phi`` about its mediolateral axis ``a`` (a sensor-frame vector)
       turns ``u`` by ``-phi`` about ``a``, so
       ``tilt = degrees(atan2(a · (u × u_n), u · u_n))``. Only the vertical is used:
       heading, which drifts without a magnetometer, never enters. For a pelvis whose
       mediolateral axis stays near horizontal (every phase of a hip thrust) this equals
       the definition above to within hundredths of a degree.
    3. The axis ``a`` is learned from the motion. Hip flexion and extension swing ``u``
       along one great circle through ``u_n``; its normal is ``a``. Samples whose ``u``
       lies 10-60° from ``u_n`` (a hip thrust's range; standing and walking sit near 90°
       and are left out, turning about the vertical never moves ``u``) add the unit
       direction of their deviation ``P u`` (``P`` projects out ``u_n``), weighted by
       ``|P u|``, to a scatter matrix; its principal direction ``e`` is the direction of
       the swing and ``a = u_n × e``. The sign: the big excursions of a hip thrust (the
       bottom, sitting on the floor, standing) are hip flexion, the pelvis below the
       extended bridge, i.e. anterior of neutral; ``e`` is oriented towards the mean
       deviation, which makes tilt rise as the pelvis rises in the concentric. The axis
       counts as learned once at least :data:`LEARN_MIN_S` seconds of such samples agree
       on one plane (the settle from the calibration bridge down to the first set's
       bottom usually suffices); it is solved every quarter second of samples, and from
       then on re-estimated from everything seen so far at the same beat. Until then tilt
       is NaN (no provisional axis).
    4. Sensor offsets. A clip-on accelerometer's zero-g offset (tens of mg) tilts the
       measured vertical differently in different poses, worth about 1.5° over a 30°
       rep; the gyroscope offset biases the AHRS. Both are re-solved once per second of
       samples from still poses (:class:`_SensorOffsets`): the neutral bridge, the bottom
       between reps, the lockout holds, standing. ``|a - b| = g`` in every still pose
       fixes the accelerometer offset ``b`` in exactly the sagittal directions the tilt
       depends on. Both offsets are removed before the AHRS, and ``u_n`` is re-derived
       from the window's mean accelerometer reading.

Streaming and batch
    :class:`TiltEstimator` holds all state explicitly and takes batches of any size;
    :func:`estimate_tilt` runs it over a whole recording in one batch. Both give the same
    numbers (to floating-point rounding: running sums add up in a different order):
    there is no second pass, so samples before the axis is learned are NaN in both.

Limitations
    The sign rule assumes that the swing seen most is hip flexion below the bridge, as in
    any hip thrust session; a recording of only posterior tucks past neutral would get
    the sign wrong. The axis is learned from whatever 10-60° swing dominates: a session
    of mostly other motion in that range (rolling on the floor, say) would mislead it.
    Tilt of a pelvis whose mediolateral axis is far from horizontal (lying on one side)
    is not the segment angle of the definition.

Units: times s, accelerations m/s², angular rates rad/s inside; degrees only in the
outputs meant for people (tilt traces and :class:`RepTilt`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.orientation import (
    STILL_ACCEL_M_S2,
    STILL_RATE_RAD_S,
    FloatArray,
    FusionSettings,
    G,
    OrientationTracker,
    StillRun,
    cross,
    quat_multiply,
    vector_norm,
    windows,
)
from sensorhub.errors import SensorhubError

__all__ = [
    "ANTERIOR_TILT_LIMIT_DEG",
    "LARGE_RANGE_LIMIT_DEG",
    "LEARN_MIN_S",
    "TILT_FUSION",
    "NeutralWindowError",
    "RepTilt",
    "TiltCalibration",
    "TiltEstimator",
    "TiltVerdict",
    "estimate_tilt",
    "rep_tilt",
]

TiltVerdict = Literal["ok", "anterior_tilt", "large_range"]

ANTERIOR_TILT_LIMIT_DEG: Final = 5.0
"""A lockout more than this far anterior of neutral is flagged ``"anterior_tilt"``."""
LARGE_RANGE_LIMIT_DEG: Final = 45.0
"""A rep whose tilt spans more than this is flagged ``"large_range"``."""
LEARN_MIN_S: Final = 0.5
"""Seconds of hip-flexion-like samples needed before the mediolateral axis is trusted."""

_LEARN_MIN_RAD: Final = math.radians(10.0)
_LEARN_MAX_RAD: Final = math.radians(60.0)
_PLANARITY_MAX: Final = 0.02  # second over first eigenvalue of the swing scatter
_STILL_BEFORE_S: Final = 0.3
_STILL_AFTER_S: Final = 0.1
_ACCEL_PRIOR_S: Final = 0.0625  # weight of the zero-offset prior, in seconds of still pose
_OFFSET_UPDATE_S: Final = 1.0
_AXIS_UPDATE_S: Final = 0.25  # the swing's axis is re-solved this often (of samples)

TILT_FUSION: Final = FusionSettings(gain=0.2, acceleration_rejection_deg=5.0)
"""AHRS tuning for tilt: with the gyroscope offset removed the gyroscope is trusted more
than the general default, and the accelerometer is ignored sooner, because the pelvis
accelerates hard in a thrust (measured: about 0.1-0.2° lower tilt RMSE than the defaults)."""
_MIN_WINDOW_SAMPLES: Final = 10
_UP: Final = np.array([0.0, 0.0, 1.0])


class NeutralWindowError(SensorhubError, ValueError):
    """The neutral window passed with too few samples in it (the sensor was away).

    The estimator cannot go on without a neutral: give it a new window (or a stored
    calibration) in a new estimator.
    """


@dataclass(frozen=True, slots=True)
class TiltCalibration:
    """The neutral orientation and the learned mediolateral axis of one clipped-on sensor.

    ``neutral`` (4,) is the AHRS quaternion (w, x, y, z, sensor→earth) in the neutral
    pose; only its vertical matters, so the AHRS's arbitrary heading is harmless.
    ``axis_sensor`` (3,) is the unit mediolateral axis in the sensor frame, signed so that
    a positive rotation about it is posterior tilt; ``None`` until learned.
    ``as_measured``: the neutral is the accelerometer's reading as it was measured, its
    zero-g offset included (pairing's, by :meth:`from_gravity`); the estimator then
    takes out the offset it learns, as it does for a neutral window's mean. False for a
    neutral already corrected (the estimator's own :attr:`TiltEstimator.calibration`).
    """

    neutral: FloatArray
    axis_sensor: FloatArray | None
    as_measured: bool = False

    def __post_init__(self) -> None:
        q = np.asarray(self.neutral, dtype=np.float64)
        if q.shape != (4,) or not np.all(np.isfinite(q)) or abs(np.linalg.norm(q) - 1) > 1e-3:
            raise ValueError(
                f"neutral must be a unit quaternion (w, x, y, z), got {self.neutral!r}"
            )
        if self.axis_sensor is not None:
            a = np.asarray(self.axis_sensor, dtype=np.float64)
            if a.shape != (3,) or not np.all(np.isfinite(a)) or abs(np.linalg.norm(a) - 1) > 1e-3:
                raise ValueError(
                    f"axis_sensor must be a unit 3-vector or None, got {self.axis_sensor!r}"
                )

    @classmethod
    def from_gravity(
        cls, gravity_sensor: npt.ArrayLike, axis_sensor: npt.ArrayLike | None = None
    ) -> TiltCalibration:
        """The calibration of a neutral pose measured as the accelerometer's mean at rest.

        ``gravity_sensor`` (3,) is what the accelerometer reads holding the neutral pose
        still (any unit: it points up in the sensor frame); the neutral quaternion is the
        shortest rotation taking it to the earth's up.
        """
        g = np.asarray(gravity_sensor, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(g)) if g.shape == (3,) else 0.0
        if not (np.all(np.isfinite(g)) and norm > 1e-6):
            raise ValueError(f"gravity_sensor must be a non-zero 3-vector, got {gravity_sensor!r}")
        u = g / norm
        q = np.concatenate([[1.0 + u[2]], np.cross(u, _UP)])
        if np.linalg.norm(q) < 1e-9:  # upside down: any half-turn about a horizontal axis
            q = np.array([0.0, 1.0, 0.0, 0.0])
        axis = None if axis_sensor is None else np.asarray(axis_sensor, dtype=np.float64)
        return cls(q / np.linalg.norm(q), axis, as_measured=True)

    @property
    def up_sensor(self) -> FloatArray:
        """The earth's up direction seen in the sensor frame in the neutral pose, (3,)."""
        return _up_in_sensor(np.asarray(self.neutral, dtype=np.float64))


def _up_in_sensor(q: FloatArray) -> FloatArray:
    """Unit up vector (…, 3) in the sensor frame for sensor→earth quaternions (…, 4).

    ``conj(q) (0, 0, 1) q`` written out: the bottom row of the rotation matrix of ``q``.
    """
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    u = np.empty((*q.shape[:-1], 3))
    u[..., 0] = 2.0 * (x * z - w * y)
    u[..., 1] = 2.0 * (y * z + w * x)
    u[..., 2] = w * w - x * x - y * y + z * z
    out: FloatArray = u / vector_norm(u, axis=-1, keepdims=True)
    return out


def _orthogonal_unit(v: FloatArray, normal: FloatArray) -> FloatArray:
    w = v - (v @ normal) * normal
    n = float(np.linalg.norm(w))
    if n < 1e-6:
        raise ValueError("axis_sensor is parallel to the neutral vertical; it cannot be sagittal")
    out: FloatArray = w / n
    return out


def _quat_between(src: FloatArray, dst: FloatArray) -> FloatArray:
    """The shortest rotation (w, x, y, z) taking unit vector ``src`` (3,) to ``dst`` (3,)."""
    q = np.concatenate([[1.0 + float(src @ dst)], np.cross(src, dst)])
    out: FloatArray = q / np.linalg.norm(q)
    return out


class _SensorOffsets:
    """Accelerometer and gyroscope offsets (m/s², rad/s), learned from still poses.

    A sample counts as still when the gyroscope has read under :data:`STILL_RATE_RAD_S` for
    :data:`_STILL_BEFORE_S` before it and :data:`_STILL_AFTER_S` after it (the look-ahead
    keeps the onset of a move, where the rate is still small but the acceleration is
    not, out). The gyroscope offset is the mean reading over still samples. The
    accelerometer offset ``b`` follows from ``|a - b| = g`` in every still pose: linear
    in ``b`` to first order, solved by least squares with a weak prior towards zero, so
    the directions that the poses seen so far do not reveal stay near zero. Only the
    components in the sagittal plane are revealed by a hip thrust, and only they matter.
    """

    def __init__(self, sample_rate_hz: float) -> None:
        self.fs = sample_rate_hz
        self.before = max(1, round(_STILL_BEFORE_S * sample_rate_hz))
        self.after = max(1, round(_STILL_AFTER_S * sample_rate_hz))
        self.accel = np.zeros(3)
        self.gyro = np.zeros(3)
        self._still = np.zeros(self.before + self.after, dtype=bool)
        self._accel_tail = np.zeros((self.after, 3))
        self._gyro_tail = np.zeros((self.after, 3))
        self._info = np.zeros((3, 3))  # Σ u uᵀ dt, s
        self._rhs = np.zeros(3)  # Σ u ρ dt, m/s² · s
        self._dirs = np.zeros(3)  # Σ u dt, s
        self._gyro_sum = np.zeros(3)  # Σ ω dt, rad
        self._seconds = 0.0

    def start_still(self, accel: FloatArray, gyro: FloatArray) -> None:
        """Take samples (n, 3) known to be still (the neutral window), n > the look-ahead."""
        self._add(accel[: -self.after], gyro[: -self.after])
        self._still[:] = True
        self._accel_tail = accel[-self.after :].copy()
        self._gyro_tail = gyro[-self.after :].copy()

    def observe(self, accel: FloatArray, gyro: FloatArray) -> None:
        """Screen raw samples (n, 3) for stillness and fold the still ones in."""
        n = len(accel)
        k = self.before + self.after
        still = (vector_norm(gyro - self.gyro, axis=1) < STILL_RATE_RAD_S) & (
            np.abs(vector_norm(accel, axis=1) - G) < STILL_ACCEL_M_S2
        )
        flags = np.concatenate([self._still, still])
        ok = windows(flags, k + 1).all(axis=1)  # still for `before` and `after` around
        acc = np.concatenate([self._accel_tail, accel])
        gyr = np.concatenate([self._gyro_tail, gyro])
        if ok.any():
            self._add(acc[:n][ok], gyr[:n][ok])
        self._still = flags[-k:]
        self._accel_tail = acc[-self.after :]
        self._gyro_tail = gyr[-self.after :]

    def _add(self, accel: FloatArray, gyro: FloatArray) -> None:
        if len(accel) == 0:
            return
        dt = 1.0 / self.fs
        norm = vector_norm(accel, axis=1)
        u = accel / norm[:, None]
        rho = (norm**2 - G**2) / (2.0 * norm)
        self._info += dt * (u.T @ u)
        self._rhs += dt * (u.T @ rho)
        self._dirs += dt * u.sum(axis=0)
        self._gyro_sum += dt * gyro.sum(axis=0)
        self._seconds += dt * len(accel)

    def solve(self) -> None:
        """Re-estimate both offsets from everything seen so far."""
        if self._seconds <= 0.0:
            return
        self.gyro = self._gyro_sum / self._seconds
        m = self._info + _ACCEL_PRIOR_S * np.eye(3)
        inv = np.linalg.inv(m)
        b = inv @ self._rhs
        for _ in range(2):  # |b|² / 2g, the second-order term of |a - b| = g
            b = inv @ (self._rhs + self._dirs * (b @ b) / (2.0 * G))
        self.accel = b


@dataclass
class _Swing:
    """Running statistics of the hip flexion swing, in the sensor frame."""

    scatter: FloatArray = field(default_factory=lambda: np.zeros((3, 3)))
    total: FloatArray = field(default_factory=lambda: np.zeros(3))
    count: int = 0
    learned: bool = False
    direction: FloatArray | None = None
    """The swing's principal direction ``e`` once learned (the axis is ``u_n × e``)."""


class TiltEstimator:
    """Streaming pelvic tilt: feed consecutive batches of samples, get tilt in degrees.

    Give ``neutral_window`` (start, end) in seconds on the clock of ``t``, a span in
    which the athlete holds the neutral pose still, or a stored ``calibration``, or both
    (then the window re-measures the neutral, and the stored axis, if any, is kept
    instead of learning a new one). Samples up to the window's end come out NaN (the
    window's are kept to measure the neutral once it has passed), as does every sample
    before the mediolateral axis is learned (module docstring); with a stored axis tilt is
    known from the window's end. With only a stored calibration the AHRS is primed on the
    first still pose instead (:data:`_STILL_BEFORE_S` + :data:`_STILL_AFTER_S` of samples
    that pass the offsets' stillness test): samples up to it come out NaN, and with a
    stored axis tilt is known from then on. An AHRS left to settle from level while the
    pelvis moves ends its initialisation some degrees off, and its acceleration
    rejection then keeps it there through a whole set.

    Besides the AHRS the estimator tracks the gyroscope and accelerometer offsets from
    still poses and re-solves them once per second of samples (at sample counts, so the
    batching never changes the answers).
    """

    def __init__(
        self,
        sample_rate_hz: float,
        *,
        neutral_window: tuple[float, float] | None = None,
        calibration: TiltCalibration | None = None,
        settings: FusionSettings | None = None,
    ) -> None:
        if not 50.0 <= sample_rate_hz <= 800.0:
            raise ValueError(
                f"sample_rate_hz = {sample_rate_hz!r}: the estimator is tuned for 50..800 Hz"
            )
        if neutral_window is None and calibration is None:
            raise ValueError("give neutral_window (start, end) in s, or a stored calibration")
        if neutral_window is not None:
            t0, t1 = (float(x) for x in neutral_window)
            if not (math.isfinite(t0) and math.isfinite(t1)) or t1 - t0 < 0.2:
                raise ValueError(
                    f"neutral_window = {neutral_window!r}: need (start, end) at least 0.2 s apart"
                )
            neutral_window = (t0, t1)
        self._fs = float(sample_rate_hz)
        self._window = neutral_window
        self._settings = settings or TILT_FUSION
        self._tracker: OrientationTracker | None = None
        self._offsets = _SensorOffsets(self._fs)
        self._block = max(1, round(_OFFSET_UPDATE_S * self._fs))
        self._axis_block = max(1, round(_AXIS_UPDATE_S * self._fs))
        self._count = 0  # samples fused since the window's end
        # Stored calibration only, before the AHRS starts: the still run in progress.
        self._still = StillRun(self._offsets.before + self._offsets.after)
        self._still_run: list[tuple[FloatArray, FloatArray]] = []
        self._neutral: FloatArray | None = None  # as the AHRS reported it
        self._neutral_accel: FloatArray | None = None  # raw accel in neutral (window mean)
        self._up_n: FloatArray | None = None
        self._fixed_axis: FloatArray | None = None
        self._axis: FloatArray | None = None
        self._swing = _Swing()
        self._pending: list[tuple[FloatArray, FloatArray]] = []
        self._last_t = -math.inf
        if calibration is not None:
            self._neutral = np.asarray(calibration.neutral, dtype=np.float64)
            if calibration.axis_sensor is not None:
                self._fixed_axis = np.asarray(calibration.axis_sensor, dtype=np.float64)
            if calibration.as_measured and neutral_window is None:
                # Tens of mg of offset tilt the measured vertical by a degree or two.
                self._neutral_accel = G * calibration.up_sensor

    @property
    def calibration(self) -> TiltCalibration | None:
        """Neutral and current axis, or ``None`` while the neutral window is still open."""
        if self._neutral is None or self._up_n is None:
            return None
        neutral = self._neutral.copy()
        if self._neutral_accel is not None:
            # Turn the reported neutral so that its vertical matches the offset-corrected one.
            old = _up_in_sensor(neutral)
            neutral = quat_multiply(neutral, _quat_between(self._up_n, old))
        axis = None if self._axis is None else self._axis.copy()
        return TiltCalibration(neutral, axis)

    @property
    def axis_learned(self) -> bool:
        """True once tilt values are being produced."""
        return self._axis is not None

    @property
    def learned_axis(self) -> FloatArray | None:
        """The mediolateral axis (3,) in the sensor frame as learned from the swings so far.

        None until it is learned, and always when the axis came with a stored calibration
        (nothing was learned: it is kept as given).
        """
        if self._fixed_axis is not None or self._axis is None:
            return None
        return self._axis.copy()

    def update(self, t: FloatArray, accel: FloatArray, gyro: FloatArray) -> FloatArray:
        """Take consecutive samples and return their tilt, degrees (n,); NaN where unknown.

        ``t`` (n,) s, strictly increasing across calls; ``accel`` (n, 3) m/s² and ``gyro``
        (n, 3) rad/s in the sensor frame, sampled uniformly at the configured rate.
        """
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        accel = np.asarray(accel, dtype=np.float64)
        gyro = np.asarray(gyro, dtype=np.float64)
        n = t.size
        if accel.shape != (n, 3) or gyro.shape != (n, 3):
            raise ValueError(
                f"accel {accel.shape} and gyro {gyro.shape} must both be (n, 3) with n = {n}"
            )
        out = np.full(n, np.nan)
        if n == 0:
            return out
        if (t[1:] <= t[:-1]).any() or t[0] <= self._last_t:
            raise ValueError("sample times must increase strictly within and across batches")
        self._last_t = float(t[-1])
        if self._tracker is None and self._window is None:
            return self._await_still(accel, gyro, out)
        if self._tracker is None:
            assert self._window is not None
            t0, t1 = self._window
            inside = (t >= t0) & (t <= t1)
            if np.any(inside):
                self._pending.append((accel[inside], gyro[inside]))
            if t[-1] <= t1:
                return out
            pending, self._pending = self._pending, []
            wa = np.concatenate([a for a, _ in pending]) if pending else np.zeros((0, 3))
            wg = np.concatenate([g for _, g in pending]) if pending else np.zeros((0, 3))
            self._start((wa, wg))
            after = t > t1
            out[after] = self._process(accel[after], gyro[after])
            return out
        return self._process(accel, gyro)

    # -- internals -------------------------------------------------------------------------

    def _start(self, window: tuple[FloatArray, FloatArray]) -> None:
        """Measure the neutral on the window's samples, prime the AHRS and start fusing."""
        wa, wg = window
        need = max(_MIN_WINDOW_SAMPLES, 2 * self._offsets.after)
        if len(wa) < need:
            raise NeutralWindowError(
                f"neutral window {self._window!r} holds {len(wa)} samples; need {need}"
            )
        self._neutral_accel = wa.mean(axis=0)
        q = self._prime(wa, wg)
        q = q * np.where(q @ q[0] < 0, -1.0, 1.0)[:, None]
        q_n = q.mean(axis=0)
        self._neutral = q_n / np.linalg.norm(q_n)
        self._up_n = _up_in_sensor(self._neutral)
        self._offsets.solve()
        self._refresh_neutral()

    def _prime(self, wa: FloatArray, wg: FloatArray) -> FloatArray:
        """Start the AHRS on still samples: levelled on their mean, then fused; their q."""
        self._tracker = OrientationTracker(self._fs, self._settings)
        self._offsets.start_still(wa, wg)
        self._offsets.gyro = wg.mean(axis=0)
        self._tracker.prime(wa.mean(axis=0))
        q, _ = self._tracker.update(wa, wg - self._offsets.gyro)
        return q

    def _await_still(self, accel: FloatArray, gyro: FloatArray, out: FloatArray) -> FloatArray:
        """Stored calibration, not yet started: prime the AHRS once the pelvis holds still.

        The run of still samples is counted across batches, so the AHRS starts at the same
        sample whatever the batching; the samples up to it stay NaN in ``out``.
        """
        n = len(accel)
        k = self._still.feed(accel, gyro)
        if k is None:
            keep = min(self._still.run, n)
            if keep < n:
                self._still_run = []
            if keep:
                self._still_run.append((accel[n - keep :].copy(), gyro[n - keep :].copy()))
            return out
        need = self._still.length
        wa = np.concatenate([a for a, _ in self._still_run] + [accel[:k]])[-need:]
        wg = np.concatenate([g for _, g in self._still_run] + [gyro[:k]])[-need:]
        self._still_run = []
        assert self._neutral is not None
        self._prime(wa, wg)
        self._up_n = _up_in_sensor(self._neutral)
        self._offsets.solve()
        self._refresh_neutral()
        out[k:] = self._process(accel[k:], gyro[k:])
        return out

    def _refresh_neutral(self) -> None:
        """Re-derive the neutral vertical (and a stored axis) after the offsets moved."""
        assert self._up_n is not None
        if self._neutral_accel is not None:
            up = self._neutral_accel - self._offsets.accel
            self._up_n = up / np.linalg.norm(up)
        if self._fixed_axis is not None:
            self._axis = _orthogonal_unit(self._fixed_axis, self._up_n)
        elif self._swing.direction is not None:
            self._axis = _axis_from(self._up_n, self._swing.direction)

    def _process(self, accel: FloatArray, gyro: FloatArray) -> FloatArray:
        """Fuse samples in blocks that end where the offsets are re-solved."""
        out = np.empty(len(accel))
        i = 0
        while i < len(accel):
            step = min(len(accel) - i, self._block - self._count % self._block)
            out[i : i + step] = self._fuse(accel[i : i + step], gyro[i : i + step])
            self._count += step
            i += step
            if self._count % self._block == 0:
                self._offsets.solve()
                self._refresh_neutral()
        return out

    def _fuse(self, accel: FloatArray, gyro: FloatArray) -> FloatArray:
        assert self._tracker is not None
        assert self._up_n is not None
        off = self._offsets
        q, _ = self._tracker.update(accel - off.accel, gyro - off.gyro)
        off.observe(accel, gyro)
        u = _up_in_sensor(q)
        axes = self._learn(u) if self._fixed_axis is None else None
        up_n = self._up_n
        if axes is None:
            if self._axis is None:
                return np.full(len(u), np.nan)
            num = cross(u, up_n) @ self._axis
        else:
            num = np.einsum("ij,ij->i", axes, cross(u, up_n))
        tilt: FloatArray = np.degrees(np.arctan2(num, u @ up_n))
        return tilt

    def _learn(self, u: FloatArray) -> FloatArray | None:
        """Fold samples' up vectors (n, 3) into the swing statistics.

        The axis is re-solved every :data:`_AXIS_UPDATE_S` of samples (at sample counts,
        so any batching gives the same axes) and holds until the next solve. Returns
        the axis in force at each sample (n, 3), NaN rows before it is learned, or
        ``None`` when the batch saw no solve: the axis in force is ``self._axis``.
        """
        assert self._up_n is not None
        up_n = self._up_n
        cos = u @ up_n
        dev = u - cos[:, None] * up_n
        sin = vector_norm(dev, axis=1)
        angle = np.arctan2(sin, cos)
        use = (angle >= _LEARN_MIN_RAD) & (angle <= _LEARN_MAX_RAD)
        w = np.where(use, 1.0 / np.maximum(sin, 1e-12), 0.0)
        dev = dev * use[:, None]
        n = len(u)
        block = self._axis_block
        first = block - self._count % block  # samples into the batch of the first solve
        if first > n:
            if use.any():
                self._fold(w, dev)
            return None
        axes = np.empty((n, 3))
        done = 0
        for end in range(first, n + 1, block):
            axes[done:end] = np.nan if self._axis is None else self._axis
            self._fold(w[done:end], dev[done:end])
            self._solve_axis()
            done = end
        axes[done:] = np.nan if self._axis is None else self._axis
        self._fold(w[done:], dev[done:])
        return axes

    def _fold(self, w: FloatArray, dev: FloatArray) -> None:
        """Add samples' weighted deviations (rows of 0 for samples outside the swing)."""
        if len(w) == 0:
            return
        sw = self._swing
        sw.scatter = sw.scatter + (dev * w[:, None]).T @ dev
        sw.total = sw.total + dev.sum(axis=0)
        sw.count += int(np.count_nonzero(w))

    def _solve_axis(self) -> None:
        """Re-solve the swing's direction; the axis is learned once the swing is planar."""
        assert self._up_n is not None
        sw = self._swing
        if sw.count == 0:
            return
        vals, vecs = np.linalg.eigh(sw.scatter)
        e = vecs[:, 2]
        if e @ sw.total < 0:
            e = -e
        planar = vals[1] <= _PLANARITY_MAX * max(vals[2], 1e-300)
        if sw.learned or (sw.count >= LEARN_MIN_S * self._fs and planar):
            sw.learned = True
            sw.direction = e
            self._axis = _axis_from(self._up_n, e)


def _axis_from(up_n: FloatArray, direction: FloatArray) -> FloatArray:
    """The mediolateral axis ``u_n × e`` of a swing along ``e``, as a unit vector."""
    axis = cross(up_n, direction)
    out: FloatArray = axis / vector_norm(axis)
    return out


def estimate_tilt(
    t: FloatArray,
    accel: FloatArray,
    gyro: FloatArray,
    sample_rate_hz: float,
    *,
    neutral_window: tuple[float, float],
) -> FloatArray:
    """Batch form of :class:`TiltEstimator`: the tilt (n,) degrees of a whole recording.

    ``t`` (n,) s, ``accel`` (n, 3) m/s², ``gyro`` (n, 3) rad/s. The same numbers as the
    streaming estimator fed the samples in any batches; NaN before the axis is learned.
    """
    return TiltEstimator(sample_rate_hz, neutral_window=neutral_window).update(t, accel, gyro)


@dataclass(frozen=True, slots=True)
class RepTilt:
    """Tilt metrics of one rep, degrees, and the verdict (as in the ground truth).

    ``verdict`` is ``None`` for a partial rep (no lockout reached); ``reason`` says why a
    rep was flagged, and is ``None`` for an ``"ok"`` rep.
    """

    bottom_deg: float
    lockout_deg: float
    range_deg: float
    verdict: TiltVerdict | None
    reason: str | None


def _verdict(
    lockout_deg: float, range_deg: float, *, partial: bool
) -> tuple[TiltVerdict | None, str | None]:
    if partial:
        return None, "partial rep: lockout not reached"
    if lockout_deg < -ANTERIOR_TILT_LIMIT_DEG:
        return "anterior_tilt", (
            f"pelvis {-lockout_deg:.1f}° anterior of neutral at lockout "
            f"(limit {ANTERIOR_TILT_LIMIT_DEG:g}°)"
        )
    if range_deg > LARGE_RANGE_LIMIT_DEG:
        return "large_range", (
            f"tilt range {range_deg:.1f}° within the rep (limit {LARGE_RANGE_LIMIT_DEG:g}°)"
        )
    return "ok", None


def _wrap_deg(angle: float) -> float:
    """The same angle in (-180°, 180°]."""
    return 180.0 - (180.0 - angle) % 360.0


def rep_tilt(
    t: FloatArray,
    tilt_deg: FloatArray,
    *,
    t_start: float,
    t_end: float,
    concentric_start: float,
    lockout_start: float,
    lockout_end: float,
    partial: bool = False,
) -> RepTilt | None:
    """Measure one rep on a tilt trace: ``t`` (n,) s increasing, ``tilt_deg`` (n,) degrees.

    ``bottom_deg``: tilt at ``concentric_start``; ``lockout_deg``: mean tilt over
    [``lockout_start``, ``lockout_end``] (the tilt at ``lockout_start`` if the hold is
    under 10 ms); ``range_deg``: max - min over [``t_start``, ``t_end``]. The trace is
    interpolated linearly between samples. Verdict, in this order: a partial rep gets
    ``None``; a lockout more than :data:`ANTERIOR_TILT_LIMIT_DEG` anterior of neutral is
    ``"anterior_tilt"``; a range above :data:`LARGE_RANGE_LIMIT_DEG` is ``"large_range"``;
    otherwise ``"ok"``. Returns ``None`` when the trace does not cover the rep or holds
    NaN inside it.
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    y = np.asarray(tilt_deg, dtype=np.float64).reshape(-1)
    if t.shape != y.shape:
        raise ValueError(f"t {t.shape} and tilt_deg {y.shape} must have the same shape")
    if not t_start <= concentric_start <= lockout_start <= lockout_end <= t_end:
        raise ValueError(
            "need t_start <= concentric_start <= lockout_start <= lockout_end <= t_end, got "
            f"{t_start}, {concentric_start}, {lockout_start}, {lockout_end}, {t_end}"
        )
    if t.size < 2 or t[0] > t_start or t[-1] < t_end:
        return None
    lo = int(np.searchsorted(t, t_start, side="right")) - 1
    hi = int(np.searchsorted(t, t_end, side="left")) + 1
    if not np.all(np.isfinite(y[lo:hi])):
        return None
    wrapped = bool(np.any(np.abs(np.diff(y[lo:hi])) > 180.0))
    if wrapped:
        # Tilt lives in (-180°, 180°]: a rep that crosses ±180° (a neutral far from the
        # pose, e.g. never calibrated) is measured on the continuous angle.
        y = y.copy()
        y[lo:hi] = np.unwrap(y[lo:hi], period=360.0)
    bottom = float(np.interp(concentric_start, t, y))
    if lockout_end - lockout_start < 0.01:
        lockout = float(np.interp(lockout_start, t, y))
    else:
        lockout = float(np.mean(np.interp(np.linspace(lockout_start, lockout_end, 201), t, y)))
    if wrapped:
        bottom, lockout = _wrap_deg(bottom), _wrap_deg(lockout)
    inner = (t > t_start) & (t < t_end)
    span = np.concatenate([np.interp([t_start, t_end], t, y), y[inner]])
    range_deg = float(span.max() - span.min())
    verdict, reason = _verdict(lockout, range_deg, partial=partial)
    return RepTilt(bottom, lockout, range_deg, verdict, reason)
