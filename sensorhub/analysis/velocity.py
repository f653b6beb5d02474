"""Vertical velocity and height of the lifted body, drift-free movement by movement.

From an IMU (the bar sensor, or the pelvis sensor in a bodyweight hip thrust) the
earth-frame vertical acceleration of :class:`~sensorhub.analysis.orientation.OrientationTracker`
is integrated once for velocity and again for height. Integration drifts, so it is
reset wherever the sensor is at rest, and between two rests the velocity error is taken
as linear in time and removed so that the velocity is zero at both ends (a zero-velocity
update). A constant acceleration error, which is what a residual accelerometer offset
looks like over a second or two, is then removed exactly, and the height change of each
movement is free of drift too.

Rest is told in two steps. First every sample is judged on a short centred window
(``window_s``) of raw samples: the angular rate is steady (its window mean within
``gyro_steady_rad_s`` of the zero-rate offset measured at the previous rest, its spread
below ``gyro_spread_rad_s``), each lightly smoothed accelerometer axis varies by less
than ``accel_range_rest``, and |a| is near g. Then, in sample order, a rest begins where
such samples have lasted ``min_rest_s`` with |a| in a narrow band, and either the
velocity integrated since the previous rest is near zero and |a| is as at one of the
last rests, or the stillness lasts ``long_still_s``. The second step keeps the brief flat
spots of a slow lift's acceleration, and the moment of peak speed of a slow descent,
from passing for rest. A rest lasts while |a| stays where it began.

The window needs ``window_s / 2`` of look-ahead and a movement is only finished when
the rest after it is believed, so the streaming output lags the input by the movement
in progress (plus ``min_rest_s``). Every decision depends only on samples up to the one
that completes it, so batches of any size give the batch answer.

The orientation filter is levelled on the sensor's first still moment
(:data:`LEVEL_ON_S`; until then the samples of a still run in progress wait for it):
left to its own start-up while the bar moves, it ends degrees off, and the first rest
and rep are measured with that.

From a bar-velocity sensor (a position transducer) height and velocity are measured
directly; :func:`transducer_motion` passes them through.

Units: seconds, m/s², rad/s, m/s, m. Arrays are 1-D of length n unless stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.orientation import (
    G,
    OrientationTracker,
    StillRun,
    run_lengths,
    vector_norm,
    windows,
)

__all__ = [
    "RestSettings",
    "VerticalMotion",
    "VerticalVelocityEstimator",
    "transducer_motion",
    "vertical_motion",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

G_REFERENCES: Final = 3
"""Rests whose |a| a new rest may match (the last few: top, bottom, top)."""
LEVEL_ON_S: Final = 0.4
"""The AHRS is levelled on the first still run this long (see :class:`StillRun`)."""
TRANSDUCER_NOISE_MPS: Final = 0.01
"""Velocity noise of a bar-velocity sensor, m/s per sample (published LPT validity)."""
TRANSDUCER_REST_MPS: Final = 2.0 * TRANSDUCER_NOISE_MPS
"""A transducer sample counts as at rest below this speed (m/s)."""


@dataclass(frozen=True, slots=True)
class VerticalMotion:
    """Vertical motion of the lifted body at n sample times; z up, SI units.

    ``t`` (n,) s; ``velocity`` (n,) m/s; ``position`` (n,) m, height relative to the start
    of the recording; ``at_rest`` (n,) bool, the body was still (velocity forced to 0);
    ``velocity_noise_mps``: white noise of the velocity samples (0 when negligible).
    """

    t: FloatArray
    velocity: FloatArray
    position: FloatArray
    at_rest: BoolArray
    velocity_noise_mps: float = 0.0

    def __len__(self) -> int:
        return int(self.t.size)

    @classmethod
    def empty(cls) -> VerticalMotion:
        """No samples."""
        return cls(np.empty(0), np.empty(0), np.empty(0), np.empty(0, dtype=bool))

    @staticmethod
    def concatenate(parts: list[VerticalMotion]) -> VerticalMotion:
        """Join consecutive pieces into one."""
        if not parts:
            return VerticalMotion.empty()
        return VerticalMotion(
            np.concatenate([p.t for p in parts]),
            np.concatenate([p.velocity for p in parts]),
            np.concatenate([p.position for p in parts]),
            np.concatenate([p.at_rest for p in parts]),
            max(p.velocity_noise_mps for p in parts),
        )


@dataclass(frozen=True, slots=True)
class RestSettings:
    """How rest is detected from raw IMU samples (see the module docstring)."""

    window_s: float = 0.12
    """Centred window every sample of which must look still."""
    gyro_rest_rad_s: float = 0.1
    """Bound on the window's mean angular rate, rad/s: above any zero-rate offset (±2 °/s)."""
    gyro_steady_rad_s: float = 0.02
    """Bound on the window's mean rate minus the offset measured at the previous rest."""
    gyro_spread_rad_s: float = 0.02
    """Bound on the rate's deviation from its window mean (white noise is ~0.002 rad/s)."""
    accel_norm_tolerance: float = 1.2
    """Bound on | |a| - g | at rest, m/s²: offset and sensitivity errors of ~100 mg pass."""
    accel_norm_rest: float = 0.25
    """Bound on the change of |a| from the previous rest, m/s²: the offset turns with the part."""
    accel_norm_hold: float = 0.08
    """Bound on the change of |a| within one rest, m/s² (smoothed noise is ~0.01)."""
    accel_range_rest: float = 0.12
    """Bound on the range (max - min) of each smoothed accelerometer axis in the window, m/s²."""
    velocity_rest_mps: float = 0.05
    """A rest is only believed where the uncorrected velocity is this small (m/s) ..."""
    velocity_drift_mps_per_s: float = 0.06
    """... plus this much per second since the previous rest (the drift allowed)."""
    min_rest_s: float = 0.15
    """A rest is believed once it has lasted this long (a bottom pause can be 0.2 s)."""
    long_still_s: float = 0.5
    """Stillness this long is rest whatever the velocity (no lift holds an acceleration)."""

    def __post_init__(self) -> None:
        for name in (
            "window_s",
            "gyro_rest_rad_s",
            "gyro_steady_rad_s",
            "gyro_spread_rad_s",
            "accel_norm_tolerance",
            "accel_norm_rest",
            "accel_norm_hold",
            "accel_range_rest",
            "velocity_rest_mps",
            "velocity_drift_mps_per_s",
            "min_rest_s",
            "long_still_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"RestSettings.{name} = {value!r}: must be a positive number")


@dataclass(frozen=True, slots=True)
class _Judged:
    """Samples with their window statistics, ready for the sequential rest decision."""

    t: FloatArray  # (m,) s
    az: FloatArray  # (m,) earth vertical acceleration, m/s²
    norm: FloatArray  # (m,) |a|, m/s²
    rate: FloatArray  # (m, 3) angular rate, rad/s
    still: BoolArray  # (m,) the window looks still
    norm_hi: FloatArray  # (m,) window max of |a|
    norm_lo: FloatArray  # (m,) window min of |a|
    rate_mean: FloatArray  # (m, 3) window mean of the angular rate

    def part(self, start: int) -> _Judged:
        """The samples from ``start`` on."""
        return _Judged(*(getattr(self, f)[start:] for f in _JUDGED_FIELDS))

    def join(self, other: _Judged) -> _Judged:
        """These samples followed by ``other``'s."""
        return _Judged(
            *(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _JUDGED_FIELDS)
        )


_JUDGED_FIELDS: Final = ("t", "az", "norm", "rate", "still", "norm_hi", "norm_lo", "rate_mean")


@dataclass
class VerticalVelocityEstimator:
    """Streaming: IMU batches in; drift-corrected vertical velocity and height out.

    Samples are finalised movement by movement. Feed consecutive batches with
    :meth:`update`; each call returns the samples finished so far (a movement is finished
    once the rest after it is believed, so output may lag by the movement in progress).
    :meth:`flush` at the end returns the rest. The concatenated output equals
    :func:`vertical_motion` on the whole recording, whatever the batch sizes. How rest is
    told is in the module docstring; the state is held in the instance.
    """

    sample_rate_hz: float
    settings: RestSettings = field(default_factory=RestSettings)
    _tracker: OrientationTracker = field(init=False, repr=False)
    # Until the sensor first holds still: the still run in progress, held back (t, a, ω).
    _level: StillRun | None = field(init=False, repr=False)
    _held: tuple[FloatArray, FloatArray, FloatArray] = field(init=False, repr=False)
    _half: int = field(init=False, repr=False)
    _smooth: int = field(init=False, repr=False)
    _long: int = field(init=False, repr=False)
    _min_rest: int = field(init=False, repr=False)
    # Raw features (|a|, smoothed ax, ay, az, ωx, ωy, ωz) and the earth vertical
    # acceleration, kept from h samples before the first sample without a window verdict.
    _feat: FloatArray = field(init=False, repr=False)
    _feat_t: FloatArray = field(init=False, repr=False)
    _feat_az: FloatArray = field(init=False, repr=False)
    _feat_first: int = field(init=False, repr=False)  # global index of _feat[0]
    _decided: int = field(init=False, repr=False)  # samples with a window verdict so far
    _accel_tail: FloatArray = field(init=False, repr=False)  # raw accel for the smoothing
    # The sequential part: rest or movement, and the movement not yet output.
    _started: bool = field(init=False, repr=False)
    _in_rest: bool = field(init=False, repr=False)
    _g_refs: tuple[float, ...] = field(init=False, repr=False)  # |a| at recent rests, m/s²
    _offset: float = field(init=False, repr=False)  # vertical accel at the previous rest
    _gyro_ref: FloatArray | None = field(init=False, repr=False)  # rate offset, (3,) rad/s
    _run: FloatArray = field(init=False, repr=False)  # this rest: Σ|a|, Σaz, Σω (3), n
    _rest_norm: float = field(init=False, repr=False)  # |a| where this rest began, m/s²
    _anchor: tuple[float, float] = field(init=False, repr=False)  # (t, az) where v = 0
    _pending: _Judged | None = field(init=False, repr=False)  # moving, not yet output
    _z: float = field(init=False, repr=False)  # height of the last output sample, m

    def __post_init__(self) -> None:
        self._tracker = OrientationTracker(self.sample_rate_hz)
        rate = self.sample_rate_hz
        self._level = StillRun(max(1, round(LEVEL_ON_S * rate)))
        self._held = (np.empty(0), np.empty((0, 3)), np.empty((0, 3)))
        self._half = max(1, round(0.5 * self.settings.window_s * rate))
        self._smooth = max(1, round(rate / 100.0))
        self._long = max(1, round(self.settings.long_still_s * rate))
        self._feat = np.empty((0, 7))
        self._feat_t = np.empty(0)
        self._feat_az = np.empty(0)
        self._feat_first = 0
        self._decided = 0
        self._accel_tail = np.empty((0, 3))
        self._started = False
        self._in_rest = False
        self._g_refs = ()
        self._offset = 0.0
        self._gyro_ref = None
        self._run = np.zeros(6)
        self._rest_norm = G
        self._anchor = (0.0, 0.0)
        self._pending = None
        self._min_rest = max(1, round(self.settings.min_rest_s * rate))
        self._z = 0.0

    def update(self, t: npt.ArrayLike, accel: npt.ArrayLike, gyro: npt.ArrayLike) -> VerticalMotion:
        """Take a batch: ``t`` (n,) s increasing, ``accel`` (n, 3) m/s², ``gyro`` (n, 3) rad/s.

        Both in the sensor frame. Returns the samples finalised so far (possibly none).
        """
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        accel = np.asarray(accel, dtype=np.float64).reshape(-1, 3)
        gyro = np.asarray(gyro, dtype=np.float64).reshape(-1, 3)
        if not len(t) == len(accel) == len(gyro):
            raise ValueError(
                f"t, accel and gyro differ in length ({len(t)}, {len(accel)}, {len(gyro)})"
            )
        if len(t) == 0:
            return VerticalMotion.empty()
        t, accel, gyro, earth = self._fuse(t, accel, gyro)
        if len(t):
            self._add_features(t, accel, gyro, earth[:, 2])
        return self._advance(final=False)

    def _fuse(
        self, t: FloatArray, accel: FloatArray, gyro: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """The samples ready for the analysis, with their earth-frame acceleration (n, 3).

        Until the sensor first holds still the samples of a still run in progress are
        held back: once the run is long enough the AHRS is levelled on it (its
        initialisation spent on the run's mean), and the run's samples are fused after
        that. A session started while the bar moves would otherwise measure its first
        rest's vertical acceleration some tenths of a m/s² off, and the first rep with it.
        """
        level = self._level
        if level is None:
            _, earth = self._tracker.update(accel, gyro)
            return t, accel, gyro, earth
        k = level.feed(accel, gyro)
        held_t, held_a, held_g = self._held
        t = np.concatenate([held_t, t])
        accel = np.concatenate([held_a, accel])
        gyro = np.concatenate([held_g, gyro])
        if k is None:
            ready = len(t) - min(level.run, len(t))
            self._held = (t[ready:], accel[ready:], gyro[ready:])
            _, earth = self._tracker.update(accel[:ready], gyro[:ready])
            return t[:ready], accel[:ready], gyro[:ready], earth
        self._level = None
        self._held = (np.empty(0), np.empty((0, 3)), np.empty((0, 3)))
        start = len(held_t) + k - level.length  # the run's first sample
        _, before = self._tracker.update(accel[:start], gyro[:start])
        self._tracker = OrientationTracker(self.sample_rate_hz)
        self._tracker.prime(accel[start : start + level.length].mean(axis=0))
        _, after = self._tracker.update(accel[start:], gyro[start:])
        return t, accel, gyro, np.concatenate([before, after])

    def _add_features(
        self, t: FloatArray, accel: FloatArray, gyro: FloatArray, az: FloatArray
    ) -> None:
        """Smooth the accelerometer and keep the window features of new samples."""
        # Causal moving average over `smooth` samples: about the same noise at any rate.
        k = self._smooth
        history = np.concatenate([self._accel_tail, accel])
        n_new, n_old = len(accel), len(self._accel_tail)
        if n_old >= k - 1:
            # Every sample has its k - 1 predecessors (all but the first batch): the same
            # sums in the same order as below, without the bookkeeping.
            total = history[n_old:] + 0.0
            for lag in range(1, k):
                total += history[n_old - lag : n_old - lag + n_new]
            smoothed = total / float(k)
        else:
            total = np.zeros((n_new, 3))
            count = np.zeros(n_new)
            for lag in range(k):  # summed lag by lag: the same rounding whatever the batching
                idx = np.arange(n_old, n_old + n_new) - lag
                have = idx >= 0
                total[have] += history[idx[have]]
                count += have
            smoothed = total / count[:, None]
        self._accel_tail = history[len(history) - (k - 1) :] if k > 1 else np.empty((0, 3))
        feat = np.empty((n_new, 7))
        feat[:, 0] = vector_norm(smoothed, axis=1)
        feat[:, 1:4] = smoothed
        feat[:, 4:7] = gyro
        self._feat = np.concatenate([self._feat, feat])
        self._feat_t = np.concatenate([self._feat_t, t])
        self._feat_az = np.concatenate([self._feat_az, az])

    def flush(self) -> VerticalMotion:
        """End of the recording: return every sample still held back."""
        held_t, held_a, held_g = self._held
        if len(held_t):
            _, earth = self._tracker.update(held_a, held_g)
            self._add_features(held_t, held_a, held_g, earth[:, 2])
            self._held = (np.empty(0), np.empty((0, 3)), np.empty((0, 3)))
        out = self._advance(final=True)
        if self._pending is None:
            return out
        # The recording ends moving: no rest after it to correct the drift with.
        t = np.concatenate([[self._anchor[0]], self._pending.t])
        v = self._uncorrected(t, np.concatenate([[self._anchor[1]], self._pending.az]))
        tail = self._moving(t, v)
        self._pending = None
        return VerticalMotion.concatenate([out, tail])

    def live(self) -> tuple[float, float, float] | None:
        """The latest judged sample for a live view: (t s, velocity m/s, height m).

        Inside a movement the velocity is not yet drift-corrected (that needs the rest
        after it) and the height is where the movement started; at rest, the final values.
        None before any sample has been judged.
        """
        if not self._started:
            return None
        if self._pending is None or len(self._pending.t) == 0:
            return self._anchor[0], 0.0, self._z
        t = np.concatenate([[self._anchor[0]], self._pending.t])
        v = self._uncorrected(t, np.concatenate([[self._anchor[1]], self._pending.az]))
        return float(t[-1]), float(v[-1]), self._z

    # -- window verdicts -------------------------------------------------------------------

    def _advance(self, *, final: bool) -> VerticalMotion:
        """Judge every sample whose window is complete (all, if final), then integrate."""
        h = self._half
        total = self._feat_first + len(self._feat)
        stop = total if final else total - h  # global index one past the last decidable
        if stop <= self._decided:
            return VerticalMotion.empty()
        lo = self._decided - self._feat_first
        count = stop - self._decided
        feat = self._feat
        # Near the ends of the recording a window is the part of it that exists: the edge
        # samples are repeated.
        left = max(0, h - lo)
        right = h if final else 0
        padded = np.concatenate(
            [np.repeat(feat[:1], left, axis=0), feat, np.repeat(feat[-1:], right, axis=0)]
        )
        start = lo - h + left
        span = padded[start : start + count + 2 * h]
        win = windows(span, 2 * h + 1)
        s = self.settings
        # Extremes over windows read fastest feature by feature (rows of the transpose);
        # they are exact in any order, unlike the mean below, which keeps its layout.
        by_feature = windows(np.ascontiguousarray(span.T), 2 * h + 1, axis=1)
        top, bottom = by_feature[:4].max(axis=2), by_feature[:4].min(axis=2)
        spread = (top[1:4] - bottom[1:4]).max(axis=0)
        norm_hi, norm_lo = top[0], bottom[0]
        rate_mean = win[:, 4:7].mean(axis=2)
        # |ω - mean| over each window: the squares of x, y, z added in that order, as
        # vector_norm does.
        dev = by_feature[4:7] - rate_mean.T[:, :, None]
        dev *= dev
        rate_spread = np.sqrt(dev.sum(axis=0)).max(axis=1)
        still = (
            (vector_norm(rate_mean, axis=1) < s.gyro_rest_rad_s)
            & (rate_spread < s.gyro_spread_rad_s)
            & (spread < s.accel_range_rest)
            & (np.maximum(norm_hi - G, G - norm_lo) < s.accel_norm_tolerance)
            & (norm_hi - norm_lo < 2.0 * s.accel_norm_hold)
        )
        sl = slice(lo, lo + count)
        out = self._sequential(
            _Judged(
                self._feat_t[sl],
                self._feat_az[sl],
                feat[sl, 0],
                feat[sl, 4:7],
                still,
                norm_hi,
                norm_lo,
                rate_mean,
            )
        )
        self._decided = stop
        keep = max(0, self._decided - h - self._feat_first)
        self._feat = self._feat[keep:]
        self._feat_t = self._feat_t[keep:]
        self._feat_az = self._feat_az[keep:]
        self._feat_first += keep
        return out

    # -- rest and movement, in sample order ------------------------------------------------

    def _steady(self, j: _Judged, pos: int) -> BoolArray:
        """Still-looking samples from ``pos`` on, checked against the last rest's offsets."""
        ok = j.still[pos:]
        if self._gyro_ref is not None:
            drift = vector_norm(j.rate_mean[pos:] - self._gyro_ref, axis=1)
            ok = ok & (drift < self.settings.gyro_steady_rad_s)
        return ok

    def _sequential(self, j: _Judged) -> VerticalMotion:
        """Split judged samples into rests and movements; return those now final."""
        parts: list[VerticalMotion] = []
        s = self.settings
        pos = 0
        if not self._started:
            # The first sample anchors the first movement: velocity 0, height 0.
            self._started = True
            self._anchor = (float(j.t[0]), float(j.az[0]))
            parts.append(VerticalMotion(j.t[:1], np.zeros(1), np.zeros(1), np.zeros(1, bool)))
            pos = 1
        while pos < len(j.t):
            if self._in_rest:
                # A rest lasts while |a| stays where it began: a slow lift can start with
                # an acceleration too gradual for the window test alone.
                ref = self._rest_norm
                ok = self._steady(j, pos)
                ok = ok & (
                    np.maximum(j.norm_hi[pos:] - ref, ref - j.norm_lo[pos:]) < s.accel_norm_hold
                )
                ends = np.flatnonzero(~ok)
                k = pos + (int(ends[0]) if len(ends) else len(ok))
                if k > pos:
                    size = k - pos
                    self._run[0] += float(j.norm[pos:k].sum())
                    self._run[1] += float(j.az[pos:k].sum())
                    self._run[2:5] += j.rate[pos:k].sum(axis=0)
                    self._run[5] += size
                    parts.append(
                        VerticalMotion(
                            j.t[pos:k], np.zeros(size), np.full(size, self._z), np.ones(size, bool)
                        )
                    )
                    self._anchor = (float(j.t[k - 1]), float(j.az[k - 1]))
                if k == len(j.t):
                    break
                # The rest is over: what it measured is the reference for the next one.
                if self._run[5] > 0:
                    mean = self._run / self._run[5]
                    self._g_refs = (*self._g_refs[1 - G_REFERENCES :], float(mean[0]))
                    self._offset = float(mean[1])
                    self._gyro_ref = mean[2:5].copy()
                self._in_rest = False
                pos = k
                continue
            # Moving: the movement ends where a believable rest begins.
            mv = j.part(pos) if self._pending is None else self._pending.join(j.part(pos))
            first = self._rest_start(mv, seen=len(mv.t) - (len(j.t) - pos))
            if first is None:
                self._pending = mv
                break
            mv_t = np.concatenate([[self._anchor[0]], mv.t[: first + 1]])
            v = self._uncorrected(mv_t, np.concatenate([[self._anchor[1]], mv.az[: first + 1]]))
            if mv_t[-1] > mv_t[0]:
                # The velocity is 0 at both rests: the drift between them goes linearly.
                v = v - v[-1] * (mv_t - mv_t[0]) / (mv_t[-1] - mv_t[0])
            parts.append(self._moving(mv_t[:-1], v[:-1], close=float(mv_t[-1])))
            # The rest's |a|: the middle of the band its first samples kept to.
            band = slice(first, first + self._min_rest)
            self._rest_norm = 0.5 * float(mv.norm_hi[band].max() + mv.norm_lo[band].min())
            self._in_rest = True
            self._run = np.zeros(6)
            self._pending = None
            # Go on from the rest's first sample, which may lie in an earlier batch.
            j, pos = mv.part(first), 0
        return VerticalMotion.concatenate(parts)

    def _rest_start(self, mv: _Judged, seen: int = 0) -> int | None:
        """Index (into the moving samples) of the first sample of a believable rest, if any.

        The velocity is integrated from the anchor (the previous rest, v = 0). A rest must look
        still for ``min_rest_s`` with |a| in a narrow band, and where it begins the velocity
        integrated since the anchor must be near zero and |a| as at the previous rest --
        unless the stillness has lasted ``long_still_s``. ``seen``: the first ``seen``
        samples were searched before and held no decision.
        """
        s = self.settings
        size = self._min_rest
        n = len(mv.t)
        if n < size:
            return None
        if seen and not self._steady(mv, seen).any():
            # A rest is decided at a still sample that completes its run; none of the new
            # samples is still, and the ones before decided nothing: nothing can be new.
            return None
        ok = self._steady(mv, 0)
        hi, lo = mv.norm_hi, mv.norm_lo
        t = np.concatenate([[self._anchor[0]], mv.t])
        az = np.concatenate([[self._anchor[1]], mv.az])
        runs = run_lengths(ok, 0)
        band_hi = windows(hi, size).max(axis=1)  # window e .. e + size - 1
        band_lo = windows(lo, size).min(axis=1)
        steady = (runs[size - 1 :] >= size) & (band_hi - band_lo < 2.0 * s.accel_norm_hold)
        v = self._uncorrected(t, az)[1 : n - size + 2]
        elapsed = t[1 : n - size + 2] - t[0]
        # The offset may have changed since the last rest (it turns with the part): take the
        # new one from the candidate rest itself, as if it had held since the anchor.
        csum = np.concatenate([[0.0], np.cumsum(mv.az - self._offset)])
        change = (csum[size:] - csum[:-size]) / size
        v = v - change * elapsed
        believable = np.abs(v) < s.velocity_rest_mps + s.velocity_drift_mps_per_s * elapsed
        if self._g_refs:
            # |a| as at one of the recent rests (top and bottom of a lift differ a little
            # as the offset turns with the part): not a flat spot of a lift's acceleration.
            near = np.zeros(n - size + 1, dtype=bool)
            for g in self._g_refs:
                off = np.maximum(hi[: n - size + 1] - g, g - lo[: n - size + 1])
                near |= off < s.accel_norm_rest
            believable &= near
        # Each start is decided at the sample that completes its test: min_rest_s on for a
        # believable rest, long_still_s on for a long one. The first decision wins, so a
        # stream judged batch by batch picks the same start as the whole recording.
        starts = np.arange(n - size + 1)
        decided = np.where(steady & believable, starts + size - 1, n)
        if n >= self._long:
            long_run = np.zeros(n - size + 1, dtype=bool)
            # ... with |a| in a narrow band all along: a slow lift's steady push is not.
            long_hi = windows(hi, self._long).max(axis=1)
            long_lo = windows(lo, self._long).min(axis=1)
            long_run[: n - self._long + 1] = (runs[self._long - 1 :] >= self._long) & (
                long_hi - long_lo < 2.0 * s.accel_norm_hold
            )
            decided = np.where(
                steady & long_run, np.minimum(decided, starts + self._long - 1), decided
            )
        best = int(np.argmin(decided))
        return best if decided[best] < n else None

    def _uncorrected(self, t: FloatArray, az: FloatArray) -> FloatArray:
        """Velocity from t[0] (v = 0 there), the last rest's offset removed; trapezoids."""
        a = az - self._offset
        return np.concatenate([[0.0], np.cumsum(0.5 * (a[1:] + a[:-1]) * np.diff(t))])

    def _moving(self, t: FloatArray, v: FloatArray, close: float | None = None) -> VerticalMotion:
        """Moving samples t[1:] with velocities v[1:] (t[0] is the output anchor, v[0] = 0).

        Heights continue from the anchor's; ``close`` is the time of the sample after them,
        a rest (v = 0) that takes the final height.
        """
        z = self._z + np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])
        if close is not None:
            self._z = float(z[-1] + 0.5 * v[-1] * (close - t[-1]))
        else:
            self._z = float(z[-1])
        size = len(t) - 1
        return VerticalMotion(t[1:], v[1:], z[1:], np.zeros(size, bool))


def vertical_motion(
    t: npt.ArrayLike,
    accel: npt.ArrayLike,
    gyro: npt.ArrayLike,
    sample_rate_hz: float,
    settings: RestSettings | None = None,
) -> VerticalMotion:
    """Batch form of :class:`VerticalVelocityEstimator` (the same answers, one call).

    ``t`` (n,) s, ``accel`` (n, 3) m/s² and ``gyro`` (n, 3) rad/s in the sensor frame.
    """
    est = VerticalVelocityEstimator(sample_rate_hz, settings or RestSettings())
    head = est.update(t, accel, gyro)
    return VerticalMotion.concatenate([head, est.flush()])


def transducer_motion(
    t: npt.ArrayLike, position: npt.ArrayLike, velocity: npt.ArrayLike
) -> VerticalMotion:
    """Vertical motion from a bar-velocity sensor: measured height (m) and velocity (m/s).

    Passed through unchanged (the transducer's own noise is a few mm and 0.01 m/s, stated
    in ``velocity_noise_mps`` for the rep detector); ``at_rest`` marks samples slower than
    :data:`TRANSDUCER_REST_MPS`. Stateless, so a stream may be converted batch by batch.
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    position = np.asarray(position, dtype=np.float64).reshape(-1)
    velocity = np.asarray(velocity, dtype=np.float64).reshape(-1)
    if not len(t) == len(position) == len(velocity):
        raise ValueError(
            f"t, position and velocity differ in length ({len(t)}, {len(position)}, "
            f"{len(velocity)})"
        )
    return VerticalMotion(
        t, velocity, position, np.abs(velocity) < TRANSDUCER_REST_MPS, TRANSDUCER_NOISE_MPS
    )
