"""Error models of the virtual sensors: 6-axis MEMS IMUs and a linear position transducer.

IMU measurement model, per axis of the sensor frame::

    accel = (I + C_a) diag(1 + s_a) · R_sensor←world (ā + (0, 0, g)) + b_a + d_a(t) + n_a
    gyro  = (I + C_g) diag(1 + s_g) · R_sensor←body ω̄_body           + b_g + d_g(t) + n_g

``s`` scale-factor errors and ``C`` cross-axis coupling (off-diagonal) are drawn once per
simulated part; ``b`` is the constant zero-g / zero-rate offset drawn once per part;
``d(t)`` is slow in-run drift (temperature and bias instability), a first-order
Gauss-Markov process exactly discretised for any sample spacing; ``n`` is white noise.

Output filter: a part samples its MEMS element far faster than it reports and filters down
to the output data rate (ODR). The model reports the mean over one output period centred
on the sample time: ``ā`` is the change of velocity over ``[t - T/2, t + T/2]`` divided by
``T = 1/ODR``, ``ω̄`` the rotation over that period divided by ``T`` (exact, from the
trajectory's orientations). That boxcar passes rep motion untouched, halves a tremor at
0.6 ODR and nulls a vibration at the ODR itself, as the parts' own decimation filters do
(theirs are steeper); a 20 Hz bar vibration sampled at 12.5 Hz is not folded down whole.

White noise per sample: ``sigma = noise_density * sqrt(ENBW)`` with the equivalent noise
bandwidth ``ENBW = noise_bandwidth_fraction * ODR``. The sensors' digital low-pass filters
in their normal modes cut off near 0.4-0.5 ODR, ST quotes RMS noise for BW = ODR/2
(DS12140, note to Table 2), and the boxcar above has exactly ODR/2, so the fraction is
0.5: ``sigma = ND * sqrt(ODR / 2)``. Samples are then rounded to int16 counts of the
selected full-scale range (one count: range / 32768) and clipped at -32768..32767, like
the real register output of every part here (16-bit data registers).

Datasheet figures: Bosch Sensortec BMI270 data sheet BST-BMI270-DS000; STMicroelectronics
LSM6DSO data sheet DS12140; InvenSense MPU-6000/MPU-6050 product specification
PS-MPU-6000A-00 (rev. 3.4); TDK InvenSense ICM-42688-P data sheet DS-000347. Each figure
below says where it comes from, or that it is modelled (not in the datasheet). The
datasheets quote "typical" values; Bosch states that typical means 1 sigma of the
production spread, and this model draws per-part errors with the typical value as 1 sigma
for every part (for the MPU-6050's ±20 °/s zero-rate tolerance that is a harsh but
possible part). Drift (bias instability) is not specified in these datasheets: it is
modelled from the offsets' temperature coefficients over a few kelvin of warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware_protocol.virtual.motion import (
    GRAVITY,
    Body,
    Trajectory,
    quat_conjugate,
    quat_multiply,
    quat_rotate,
)

__all__ = [
    "BMI270",
    "GYMAWARE_LIKE",
    "ICM42688P",
    "IMU_PARTS",
    "LSM6DSO",
    "MPU6050",
    "BarSensorSimulator",
    "BarSensorSpec",
    "ImuSimulator",
    "ImuSpec",
    "random_mounting",
]

FloatArray = NDArray[np.float64]
_UG = 1e-6 * GRAVITY  # one micro-g in m/s²
_DPS = math.pi / 180.0  # one degree per second in rad/s
_DEFAULT_ODR_HZ = 100.0


@dataclass(frozen=True, slots=True)
class ImuSpec:
    """Datasheet figures of one IMU part; every error is 1 sigma of a per-part draw."""

    name: str
    accel_noise_density_ug_per_rthz: float
    gyro_noise_density_dps_per_rthz: float
    accel_bias_mg: float  # zero-g offset
    gyro_bias_dps: float  # zero-rate offset
    accel_bias_instability_mg: float  # in-run drift, stationary 1 sigma
    gyro_bias_instability_dps: float  # in-run drift, stationary 1 sigma
    bias_correlation_s: float  # correlation time of the drift
    accel_scale_error: float  # sensitivity tolerance, fraction
    gyro_scale_error: float  # sensitivity tolerance, fraction
    accel_cross_axis: float  # cross-axis sensitivity, fraction
    gyro_cross_axis: float  # cross-axis sensitivity, fraction
    noise_bandwidth_fraction: float = 0.5  # ENBW / ODR
    accel_ranges_g: tuple[int, ...] = (2, 4, 8, 16)
    gyro_ranges_dps: tuple[int, ...] = (125, 250, 500, 1000, 2000)
    odr_hz: tuple[float, ...] = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0)  # both sensors on
    accel_bias_z_mg: float | None = None  # zero-g offset of z where it differs from x, y

    def accel_bias_sigma_mg(self) -> tuple[float, float, float]:
        """Zero-g offset spread (1 sigma) of the x, y and z axes, mg."""
        z = self.accel_bias_mg if self.accel_bias_z_mg is None else self.accel_bias_z_mg
        return (self.accel_bias_mg, self.accel_bias_mg, z)


BMI270 = ImuSpec(
    name="BMI270",
    # BST-BMI270-DS000 Table 1, accelerometer output noise density: 160 ug/sqrt(Hz), typ.
    accel_noise_density_ug_per_rthz=160.0,
    # BST-BMI270-DS000 Table 1, gyroscope output noise density: 0.008 dps/sqrt(Hz), typ.
    # (the performance mode quoted on the title page reaches < 0.007).
    gyro_noise_density_dps_per_rthz=0.008,
    # BST-BMI270-DS000 Table 1, zero-g offset: +-20 mg, typ.
    accel_bias_mg=20.0,
    # BST-BMI270-DS000 Table 1, zero-rate offset: +-0.5 dps, typ. (soldered, over life time).
    gyro_bias_dps=0.5,
    # Modelled, not in the datasheet: a few kelvin of warm-up times the offset temperature
    # coefficients (order 0.2 mg/K and 0.02 dps/K, typ.) over a training session.
    accel_bias_instability_mg=1.0,
    gyro_bias_instability_dps=0.05,
    bias_correlation_s=300.0,
    # Sensitivity tolerance: +-0.4 % typ. for the accelerometer; the gyroscope after the
    # built-in sensitivity trim (CRT) is taken as +-0.4 % as well (typ.).
    accel_scale_error=0.004,
    gyro_scale_error=0.004,
    # Cross-axis sensitivity: +-1 % typ. (accelerometer); gyroscope modelled the same.
    accel_cross_axis=0.01,
    gyro_cross_axis=0.01,
    # BST-BMI270-DS000 Table 1: accelerometer ODR 0.78-1600 Hz, gyroscope 25-3200 Hz;
    # both sensors run together from 25 Hz.
    odr_hz=(25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0),
)

LSM6DSO = ImuSpec(
    name="LSM6DSO",
    # DS12140 Table 2, acceleration noise density, high-performance mode: 70 ug/sqrt(Hz) typ.
    # (at +-2 g; slightly higher at the wider ranges).
    accel_noise_density_ug_per_rthz=70.0,
    # DS12140 Table 2, rate noise density, high-performance mode: 3.8 mdps/sqrt(Hz) typ.
    gyro_noise_density_dps_per_rthz=0.0038,
    # DS12140 Table 2, linear acceleration zero-g level offset accuracy: +-20 mg typ.
    accel_bias_mg=20.0,
    # DS12140 Table 2, angular rate zero-rate level: +-1 dps typ.
    gyro_bias_dps=1.0,
    # Modelled, not in the datasheet: warm-up drift via the zero-level temperature
    # coefficients (+-0.1 mg/K and +-0.01 dps/K typ.) over a few kelvin.
    accel_bias_instability_mg=0.5,
    gyro_bias_instability_dps=0.03,
    bias_correlation_s=300.0,
    # Modelled: ST gives sensitivities after factory trim, not a tolerance table for this
    # part; 1 % for both sensors is the usual order for its family.
    accel_scale_error=0.01,
    gyro_scale_error=0.01,
    accel_cross_axis=0.01,
    gyro_cross_axis=0.01,
    # DS12140 Table 2, LA_ODR and G_ODR: 12.5 to 6664 Hz in steps of two (26, 52, 104 ...).
    odr_hz=(12.5, 26.0, 52.0, 104.0, 208.0, 416.0, 833.0, 1666.0),
)

MPU6050 = ImuSpec(
    name="MPU-6050",
    # PS-MPU-6000A-00 section 6.2, accelerometer noise power spectral density at 10 Hz:
    # 400 ug/sqrt(Hz) typ.
    accel_noise_density_ug_per_rthz=400.0,
    # Section 6.1, gyroscope rate noise spectral density at 10 Hz: 0.005 dps/sqrt(Hz) typ.
    gyro_noise_density_dps_per_rthz=0.005,
    # Section 6.2, zero-g output initial calibration tolerance: +-50 mg (x, y), +-80 mg (z).
    accel_bias_mg=50.0,
    accel_bias_z_mg=80.0,
    # Section 6.1, initial ZRO tolerance: +-20 dps at 25 °C (a cheap part's offset).
    gyro_bias_dps=20.0,
    # Modelled: a few kelvin of warm-up times the offset changes over temperature (zero-g
    # +-35 mg over 0-70 °C, ZRO +-20 dps over -40-85 °C, i.e. 0.5 mg/K and 0.16 dps/K).
    accel_bias_instability_mg=1.5,
    gyro_bias_instability_dps=0.5,
    bias_correlation_s=300.0,
    # Sections 6.1 and 6.2: sensitivity scale factor tolerance +-3 %, cross-axis +-2 %.
    accel_scale_error=0.03,
    gyro_scale_error=0.03,
    accel_cross_axis=0.02,
    gyro_cross_axis=0.02,
    gyro_ranges_dps=(250, 500, 1000, 2000),
    # Section 6.1/6.2 and the register map: sample rate = 1 kHz / (1 + SMPLRT_DIV) with the
    # low-pass filter on; the accelerometer's ODR is at most 1 kHz.
    odr_hz=(12.5, 25.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0),
)

ICM42688P = ImuSpec(
    name="ICM-42688-P",
    # DS-000347 features: accelerometer noise 70 ug/sqrt(Hz), low-noise mode.
    accel_noise_density_ug_per_rthz=70.0,
    # DS-000347 features: gyroscope noise 2.8 mdps/sqrt(Hz), low-noise mode.
    gyro_noise_density_dps_per_rthz=0.0028,
    # Modelled: zero-g offset +-20 mg, as the BMI270's and the LSM6DSO's.
    accel_bias_mg=20.0,
    # DS-000347 gyroscope specifications, initial ZRO tolerance (board level): +-0.5 dps.
    gyro_bias_dps=0.5,
    # Modelled: warm-up over a few kelvin times the offsets' temperature coefficients
    # (about 0.15 mg/K and 0.005 dps/K typ.).
    accel_bias_instability_mg=0.5,
    gyro_bias_instability_dps=0.015,
    bias_correlation_s=300.0,
    # Modelled: 0.5 % sensitivity and 1 % cross-axis, the order TDK gives for this family
    # after factory trim.
    accel_scale_error=0.005,
    gyro_scale_error=0.005,
    accel_cross_axis=0.01,
    gyro_cross_axis=0.01,
    gyro_ranges_dps=(125, 250, 500, 1000, 2000),  # also 15.625-62.5, not used here
    # DS-000347 ODR settings in low-noise mode: 12.5 Hz to 32 kHz.
    odr_hz=(12.5, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0),
)

IMU_PARTS: tuple[ImuSpec, ...] = (BMI270, LSM6DSO, MPU6050, ICM42688P)
"""Every IMU part modelled, for corpora that draw one per sensor."""


def random_mounting(rng: np.random.Generator) -> FloatArray:
    """A uniformly random sensor→body rotation (w, x, y, z): a clip worn any way round."""
    u1, u2, u3 = rng.random(3)
    a, b = math.sqrt(1 - u1), math.sqrt(u1)
    q = np.array(
        [
            b * math.cos(2 * math.pi * u3),
            a * math.sin(2 * math.pi * u2),
            a * math.cos(2 * math.pi * u2),
            b * math.sin(2 * math.pi * u3),
        ]
    )
    return q if q[0] >= 0 else -q


def _part_matrix(rng: np.random.Generator, scale: float, cross: float) -> FloatArray:
    m = np.diag(1.0 + rng.normal(0.0, scale, 3)) if scale > 0 else np.eye(3)
    off = rng.normal(0.0, cross, (3, 3)) if cross > 0 else np.zeros((3, 3))
    np.fill_diagonal(off, 0.0)
    return np.asarray(m + off, dtype=np.float64)


class _Drift:
    """Three independent first-order Gauss-Markov processes, exact for uneven sample spacing."""

    def __init__(self, sigma: float, tau: float, rng: np.random.Generator) -> None:
        self.sigma, self.tau = sigma, tau
        self.value = rng.normal(0.0, sigma, 3) if sigma > 0 else np.zeros(3)
        self.t: float | None = None

    def advance(self, t: FloatArray, z: FloatArray) -> FloatArray:
        """Drift at times ``t`` (strictly after the last call), driven by normals ``z`` (n, 3)."""
        t_last = t[0] if self.t is None else self.t
        out = np.empty((t.size, 3))
        # Chunks keep exp((t - t_last) / tau) far from overflow however long the batch.
        start = 0
        while start < t.size:
            stop = int(np.searchsorted(t, t_last + 50.0 * self.tau, side="right"))
            stop = max(stop, start + 1)
            tt = t[start:stop]
            dt = np.diff(np.concatenate([[t_last], tt]))
            w = self.sigma * np.sqrt(-np.expm1(-2 * dt / self.tau))[:, None] * z[start:stop]
            e = np.exp(-(tt - t_last) / self.tau)[:, None]
            out[start:stop] = e * (self.value + np.cumsum(w / e, axis=0))
            self.value, t_last = out[stop - 1].copy(), float(tt[-1])
            start = stop
        self.t = float(t[-1])
        return out


def _check_times(t: FloatArray, last: float | None) -> None:
    if t.ndim != 1 or t.size == 0:
        raise ValueError("t must be a non-empty 1-D array of sample times (s)")
    if not np.all(np.isfinite(t)):
        raise ValueError("t holds NaN or infinite sample times")
    if np.any(np.diff(t) <= 0) or (last is not None and t[0] <= last):
        raise ValueError(
            "sample times must increase strictly within and across measure() calls "
            f"(last time so far: {last})"
        )


class ImuSimulator:
    """One simulated IMU part clipped to a body: draws its errors once, then samples.

    Every call of :meth:`measure` or :meth:`measure_si` advances the part's drift and noise,
    so times must increase strictly across calls; small real-time batches and one large
    offline batch give the same statistics (and, for equal ``odr_hz``, the same numbers).
    """

    def __init__(
        self,
        trajectory: Trajectory,
        body: Body,
        *,
        spec: ImuSpec = BMI270,
        mounting: FloatArray | None = None,
        rng: np.random.Generator,
    ) -> None:
        if body not in trajectory.bodies:
            raise ValueError(f"body {body!r} not in this scenario; bodies: {trajectory.bodies}")
        self.trajectory = trajectory
        self.body = body
        self.spec = spec
        q = np.array([1.0, 0.0, 0.0, 0.0]) if mounting is None else np.asarray(mounting, float)
        if q.shape != (4,) or not math.isclose(float(np.linalg.norm(q)), 1.0, abs_tol=1e-6):
            raise ValueError("mounting must be a unit quaternion (w, x, y, z)")
        self.mounting = q / np.linalg.norm(q)
        self._rng = rng
        self.accel_matrix = _part_matrix(rng, spec.accel_scale_error, spec.accel_cross_axis)
        self.gyro_matrix = _part_matrix(rng, spec.gyro_scale_error, spec.gyro_cross_axis)
        self.accel_bias = rng.normal(0.0, np.array(spec.accel_bias_sigma_mg()) * 1e3 * _UG)
        self.gyro_bias = rng.normal(0.0, spec.gyro_bias_dps * _DPS, 3)  # rad/s
        tau = spec.bias_correlation_s
        self._accel_drift = _Drift(spec.accel_bias_instability_mg * 1e3 * _UG, tau, rng)
        self._gyro_drift = _Drift(spec.gyro_bias_instability_dps * _DPS, tau, rng)
        self._last_t: float | None = None

    def noise_std(self, odr_hz: float) -> tuple[float, float]:
        """White-noise standard deviation per sample at ``odr_hz``: (m/s², rad/s)."""
        enbw = self.spec.noise_bandwidth_fraction * odr_hz
        return (
            self.spec.accel_noise_density_ug_per_rthz * _UG * math.sqrt(enbw),
            self.spec.gyro_noise_density_dps_per_rthz * _DPS * math.sqrt(enbw),
        )

    def measure_si(
        self, t: FloatArray, *, odr_hz: float | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Specific force (m/s²) and angular rate (rad/s) in the sensor frame, (n, 3) each,
        with every error but quantisation and range clipping.

        ``odr_hz`` is the configured output data rate that sets the noise bandwidth; when
        omitted it is inferred from the median sample spacing (including the previous call),
        or taken as 100 Hz for a lone first sample. Pass it when the ODR is known.
        """
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        _check_times(t, self._last_t)
        if odr_hz is None:
            spacing = np.diff(t if self._last_t is None else np.concatenate([[self._last_t], t]))
            # A lone first sample has no spacing; its noise level is then a default's.
            odr_hz = 1.0 / float(np.median(spacing)) if spacing.size else _DEFAULT_ODR_HZ
        if not 1.0 <= odr_hz <= 10_000.0:
            raise ValueError(f"odr_hz = {odr_hz!r}: allowed 1..10000 Hz")
        f, w = self._averaged(t, 1.0 / odr_hz)
        z = self._rng.standard_normal((t.size, 12))
        sa, sg = self.noise_std(odr_hz)
        accel = f @ self.accel_matrix.T + self.accel_bias + self._accel_drift.advance(t, z[:, 6:9])
        gyro = w @ self.gyro_matrix.T + self.gyro_bias + self._gyro_drift.advance(t, z[:, 9:12])
        self._last_t = float(t[-1])
        return accel + sa * z[:, 0:3], gyro + sg * z[:, 3:6]

    def _averaged(self, t: FloatArray, period: float) -> tuple[FloatArray, FloatArray]:
        """Specific force and angular rate in the sensor frame, each the mean over one output
        period centred on ``t`` (module docstring), without any error."""
        # One evaluation of the period's start, middle and end of every sample, interleaved
        # so that the times stay in order: a real-time batch costs about one state() call.
        times = np.stack([t - period / 2, t, t + period / 2], axis=1).reshape(-1)
        st = self.trajectory.state(self.body, times)
        velocity = st.velocity.reshape(-1, 3, 3)
        quat = st.orientation.reshape(-1, 3, 4)
        q_lo, q_at, q_hi = quat[:, 0], quat[:, 1], quat[:, 2]
        q_lo = q_lo * np.sign(np.sum(q_lo * q_at, axis=1))[:, None]
        q_hi = q_hi * np.sign(np.sum(q_hi * q_at, axis=1))[:, None]
        # The period's mean orientation (Simpson's rule: exact while the rotation is
        # quadratic in time); gravity and the mean acceleration are seen through it.
        q_mid = q_lo + 4.0 * q_at + q_hi
        q_mid /= np.linalg.norm(q_mid, axis=1)[:, None]
        # The period's rotation, in the body frame: its rotation vector over the period.
        turn = quat_multiply(quat_conjugate(q_lo), q_hi)
        sin_half = np.linalg.norm(turn[:, 1:], axis=1)
        angle = 2.0 * np.arctan2(sin_half, turn[:, 0])
        scale = np.where(sin_half > 1e-12, angle / np.maximum(sin_half, 1e-300), 2.0)
        omega = turn[:, 1:] * (scale / period)[:, None]
        accel = (velocity[:, 2] - velocity[:, 0]) / period + np.array([0.0, 0.0, GRAVITY])
        q_sensor = quat_multiply(q_mid, self.mounting)  # sensor -> world
        f = quat_rotate(quat_conjugate(q_sensor), accel)
        w = quat_rotate(quat_conjugate(self.mounting), omega)
        return f, w

    def measure(
        self, t: FloatArray, *, accel_range_g: int, gyro_range_dps: int, odr_hz: float | None = None
    ) -> tuple[NDArray[np.int16], NDArray[np.int16]]:
        """Raw int16 register counts (n, 3) of accelerometer and gyroscope at times ``t``.

        Full scale: ``accel_range_g * 9.80665`` m/s² and ``gyro_range_dps`` °/s map to 32768
        counts; values are rounded and clipped to -32768..32767 as the part saturates.
        """
        if accel_range_g not in self.spec.accel_ranges_g:
            raise ValueError(
                f"accel_range_g = {accel_range_g!r}; {self.spec.name} supports "
                f"{self.spec.accel_ranges_g}"
            )
        if gyro_range_dps not in self.spec.gyro_ranges_dps:
            raise ValueError(
                f"gyro_range_dps = {gyro_range_dps!r}; {self.spec.name} supports "
                f"{self.spec.gyro_ranges_dps}"
            )
        accel, gyro = self.measure_si(t, odr_hz=odr_hz)
        a = np.rint(accel * (32768.0 / (accel_range_g * GRAVITY)))
        g = np.rint(gyro * (32768.0 / (gyro_range_dps * _DPS)))
        return (
            np.clip(a, -32768, 32767).astype(np.int16),
            np.clip(g, -32768, 32767).astype(np.int16),
        )


@dataclass(frozen=True, slots=True)
class BarSensorSpec:
    """A linear position transducer (tethered cable on the bar); errors are 1 sigma."""

    name: str
    position_resolution_m: float  # encoder step
    position_noise_m: float  # white, per sample
    velocity_noise_mps: float  # white, per sample
    scale_error: float  # fraction, drawn once per device (spool calibration, cable angle)
    latency_s: float  # reported sample describes the bar this long before its timestamp


# Modelled on published validity studies of linear position transducers such as GymAware
# (per-rep mean velocity within about 0.01-0.03 m/s of 3D motion capture); these are not
# manufacturer specifications.
GYMAWARE_LIKE = BarSensorSpec(
    name="gymaware-like LPT",
    position_resolution_m=0.0002,
    position_noise_m=0.0005,
    velocity_noise_mps=0.01,
    scale_error=0.005,
    latency_s=0.02,
)


class BarSensorSimulator:
    """Vertical bar position (relative to the start) and velocity as an LPT reports them."""

    def __init__(
        self,
        trajectory: Trajectory,
        *,
        spec: BarSensorSpec = GYMAWARE_LIKE,
        rng: np.random.Generator,
    ) -> None:
        if "bar" not in trajectory.bodies:
            raise ValueError("the scenario has no bar, so a bar-velocity sensor sees nothing")
        self.trajectory = trajectory
        self.spec = spec
        self._rng = rng
        self.scale = 1.0 + float(rng.normal(0.0, spec.scale_error)) if spec.scale_error else 1.0
        self._z0 = float(trajectory.state("bar", np.zeros(1)).position[0, 2])

    def measure(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Vertical position (m, relative to the start pose) and velocity (m/s), shape (n,)."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        st = self.trajectory.state("bar", t - self.spec.latency_s)
        z = self._rng.standard_normal((t.size, 2))
        pos = self.scale * (st.position[:, 2] - self._z0) + self.spec.position_noise_m * z[:, 0]
        if self.spec.position_resolution_m > 0:
            res = self.spec.position_resolution_m
            pos = np.rint(pos / res) * res
        vel = self.scale * st.velocity[:, 2] + self.spec.velocity_noise_mps * z[:, 1]
        return pos, vel
