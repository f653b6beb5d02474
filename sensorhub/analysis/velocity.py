"""Vertical velocity and height of the lifted body, phase by phase, without needing rest.

From an IMU (the bar sensor, a wrist sensor, or the pelvis sensor in a bodyweight hip
thrust) the vertical acceleration is integrated for velocity and again for height.
Integration drifts; what stops it is knowing where the velocity is zero, and the motion
itself says where: at every turnaround of the movement (each top and bottom) and
throughout a rest. So the stream is cut into phases at its turnarounds and rests, each
phase is integrated from zero velocity at its start, and the velocity error at its end
(the drift of that phase alone) is taken out linearly over the phase. Drift cannot build
up across reps; touch-and-go reps, squats with no pause and wrists that never stop all
have turnarounds, and a rest, where there is one, is used as well.

Method, per block of ``stillness.block_s`` (0.1 s):
    1. Stillness and the gyroscope's offset (:mod:`sensorhub.analysis.stillness`,
       :mod:`sensorhub.analysis.gyro_offset`): measured against the recording's own
       quietest stretches and against gravity, never a fixed noise bound.
    2. Orientation: imufusion's AHRS on the offset-corrected angular rate. The first
       ``level_s`` are held back, so that the offset is measured over them before the
       AHRS is levelled on their quietest block and fuses them.
    3. Turnarounds (:mod:`sensorhub.analysis.turnarounds`): the extremes of a drift-free
       height proxy over the last ``proxy_history_s``, each taken once it lies
       ``proxy_lag_s`` back from the newest sample (the proxy's zero-phase filter needs
       that much of what follows). Rests: still runs of ``min_rest_s`` along which the
       proxy's velocity stays under ``rest_velocity_mps``.
    4. Every phase that ends at such a point is final: integrated, its drift removed,
       output. A stretch with no turn for ``max_phase_s`` is cut where it was slowest.
The output therefore lags the input by about ``proxy_lag_s`` plus the phase in progress.
Every decision is taken at block ends on fixed sample counts, so batches of any size
give the batch answer (:func:`vertical_motion` is this estimator run once) with the
same rests; the velocities agree to a few mm/s (a turn may land a sample apart).

From a bar-velocity sensor (a position transducer) height and velocity are measured
directly; :func:`transducer_motion` passes them through.

Units: seconds, m/s², rad/s, m/s, m. Arrays are 1-D of length n unless stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.orientation import OrientationTracker
from sensorhub.analysis.stillness import StillnessBlock, StillnessDetector, StillnessSettings
from sensorhub.analysis.turnarounds import (
    SWING_SHARE,
    cumulative_trapezoid,
    height_proxy,
    swing_extremes,
    typical_swing,
)

__all__ = [
    "MotionSettings",
    "VerticalMotion",
    "VerticalVelocityEstimator",
    "transducer_motion",
    "vertical_motion",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

TRANSDUCER_NOISE_MPS: Final = 0.01
"""Velocity noise of a bar-velocity sensor, m/s per sample (published LPT validity)."""
TRANSDUCER_REST_MPS: Final = 2.0 * TRANSDUCER_NOISE_MPS
"""A transducer sample counts as at rest below this speed (m/s)."""
PROXY_RATE_HZ: Final = 50.0
"""The proxy is computed on the stream decimated to about this rate (plenty for 3 Hz)."""
LIVE_SPEED_SHARE: Final = 2.0
"""The live velocity stays within this many times the proxy's largest speed in the phase
(the proxy's filter bends speeds down, never up by this much)."""
PROXY_REST_SHARE: Final = 4.0
"""Where the integral says a still run is at rest, the proxy may move up to this many
times ``rest_velocity_mps`` (its filter bends a hold after a rise); a slow, steady
eccentric that only looks still moves faster than that in the proxy."""


@dataclass(frozen=True, slots=True)
class VerticalMotion:
    """Vertical motion of the lifted body at n sample times; z up, SI units.

    ``t`` (n,) s; ``velocity`` (n,) m/s; ``position`` (n,) m, height relative to the start
    of the recording; ``at_rest`` (n,) bool, the body was still (velocity forced to 0);
    ``velocity_noise_mps``: white noise of the velocity samples (0 when negligible);
    ``proxy`` (n,) m or None: the drift-free height proxy of the turnarounds
    (:func:`~sensorhub.analysis.turnarounds.height_proxy`), not metres of travel but a
    second, independent measure of how far each phase went next to the others; NaN
    near the stream's ends, where its filter has not settled (None: ``position`` is
    drift-free itself, as a transducer's is).
    """

    t: FloatArray
    velocity: FloatArray
    position: FloatArray
    at_rest: BoolArray
    velocity_noise_mps: float = 0.0
    proxy: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.t.size)

    @classmethod
    def empty(cls) -> VerticalMotion:
        """No samples."""
        return cls(np.empty(0), np.empty(0), np.empty(0), np.empty(0, dtype=bool))

    @staticmethod
    def concatenate(parts: list[VerticalMotion]) -> VerticalMotion:
        """Join consecutive pieces into one."""
        parts = [p for p in parts if len(p.t)] or parts[:1]
        if not parts:
            return VerticalMotion.empty()
        proxies = [p.proxy for p in parts]
        return VerticalMotion(
            np.concatenate([p.t for p in parts]),
            np.concatenate([p.velocity for p in parts]),
            np.concatenate([p.position for p in parts]),
            np.concatenate([p.at_rest for p in parts]),
            max(p.velocity_noise_mps for p in parts),
            None if any(q is None for q in proxies) else np.concatenate(proxies),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class MotionSettings:
    """How velocity is found from the motion itself (see the module docstring)."""

    stillness: StillnessSettings = field(default_factory=StillnessSettings)
    level_s: float = 10.0
    """The stream's first this many seconds are held back while the gyroscope's offset is
    measured over them (left to an offset still being found, the AHRS measured the first
    reps tens of centimetres off)."""
    proxy_history_s: float = 20.0
    """The turnaround proxy is computed over this much of the newest stream."""
    proxy_lag_s: float = 3.0
    """A turnaround is taken once this much stream follows it: the proxy's filter (0.15 Hz)
    settles over about that long, and a turn taken sooner moves."""
    swing_m: float = 0.02
    """Whatever the recording's typical swing, a turn reverses by at least this (m)."""
    min_rest_s: float = 0.3
    """A still run this long is a rest when the velocity stays small along it."""
    rest_velocity_mps: float = 0.05
    rest_span_s: float = 4.0
    """Between two rests this close (s) the movement's drift is taken out between them
    alone: turns found in between are less exact zeros than the rests."""
    max_phase_s: float = 12.0
    """A stretch with no turnaround or rest this long is cut where it was slowest."""

    def __post_init__(self) -> None:
        for name in (
            "level_s",
            "proxy_history_s",
            "proxy_lag_s",
            "swing_m",
            "min_rest_s",
            "rest_velocity_mps",
            "rest_span_s",
            "max_phase_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"MotionSettings.{name} = {value!r}: must be a positive number")
        if self.proxy_history_s < 2 * self.proxy_lag_s:
            raise ValueError(
                f"MotionSettings.proxy_history_s = {self.proxy_history_s!r} must be at least "
                f"twice proxy_lag_s = {self.proxy_lag_s!r}"
            )


class VerticalVelocityEstimator:
    """Streaming: IMU batches in; vertical velocity and height out, phase by phase.

    Feed consecutive batches with :meth:`update`; each call returns the samples finalised
    so far (see the module docstring for when that is). :meth:`flush` at the end returns
    the rest. The concatenated output is :func:`vertical_motion` on the whole recording
    (to a few mm/s), whatever the batch sizes. State is held in the instance.
    """

    def __init__(self, sample_rate_hz: float, settings: MotionSettings | None = None) -> None:
        if not (math.isfinite(sample_rate_hz) and 1.0 <= sample_rate_hz <= 10_000.0):
            raise ValueError(f"sample rate {sample_rate_hz!r} Hz is outside 1..10000 Hz")
        self.sample_rate_hz = rate = float(sample_rate_hz)
        self.settings = s = settings or MotionSettings()
        self._still = StillnessDetector(rate, s.stillness)
        self._tracker: OrientationTracker | None = None
        self._held: list[tuple[FloatArray, StillnessBlock]] = []
        self._times = np.empty(0)  # times of samples given to the stillness detector, unjudged
        self._last_t = -math.inf
        self._step = max(1, round(rate / PROXY_RATE_HZ))
        self._lag = max(1, round(s.proxy_lag_s * rate))
        # The newest stream: from proxy_history_s before the anchor (or the start) on.
        self._t = np.empty(0)
        self._a = np.empty(0)  # vertical acceleration, m/s²
        self._quiet = np.empty(0, dtype=bool)
        self._first = 0  # global index of the buffer's first sample
        self._anchor = 0  # global index of the last finalised point (velocity 0 there)
        self._height = 0.0  # height at the anchor, m
        self._bias = 0.0  # the last phase's acceleration bias, m/s² (for the live value)
        self._anchor_at_rest = False
        self._proxy_velocity = np.empty(0)  # the proxy's velocity over the buffer, m/s
        self._proxy = np.empty(0)  # the proxy's height over the buffer, m
        self._refined: dict[tuple[int, int, bool], int] = {}  # see _turns

    # -- input -----------------------------------------------------------------------------

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
        if t[0] <= self._last_t or (len(t) > 1 and np.any(np.diff(t) <= 0)):
            raise ValueError("sample times must increase strictly within and across batches")
        self._last_t = float(t[-1])
        self._times = np.concatenate([self._times, t])
        return VerticalMotion.concatenate(
            [self._on_block(block) for block in self._still.push(accel, gyro)]
        )

    def flush(self) -> VerticalMotion:
        """End of the recording: return every sample still held back."""
        parts = [self._on_block(block) for block in self._still.flush()]
        if self._tracker is None and self._held:
            parts += self._level()
        parts.append(self._finalise(final=True))
        return VerticalMotion.concatenate(parts)

    def live(self) -> tuple[float, float, float] | None:
        """The latest sample for a live view: (t s, velocity m/s, height m), or None.

        Inside a phase the velocity is integrated from the last turnaround with the last
        phase's bias, not yet drift-corrected, and held within what the drift-free proxy
        says the body's speed has been since (a long phase drifts by metres a second);
        the phase's final values come later.
        """
        lo = self._anchor - self._first
        if len(self._t) == 0 or lo >= len(self._t) - 1:
            return None
        t, a = self._t[lo:], self._a[lo:] - self._bias
        v = cumulative_trapezoid(a, t)
        z = cumulative_trapezoid(v, t)
        proxy = self._proxy_velocity[lo:]
        bound = LIVE_SPEED_SHARE * float(np.abs(proxy).max()) if len(proxy) else math.inf
        speed = float(np.clip(v[-1], -bound, bound))
        return float(t[-1]), speed, self._height + float(z[-1])

    # -- attitude --------------------------------------------------------------------------

    def _on_block(self, block: StillnessBlock) -> VerticalMotion:
        n = len(block.still)
        t, self._times = self._times[:n], self._times[n:]
        if self._tracker is None:
            self._held.append((t, block))
            if (
                sum(len(b.still) for _, b in self._held)
                < self.settings.level_s * self.sample_rate_hz
            ):
                return VerticalMotion.empty()
            return VerticalMotion.concatenate(self._level())
        self._append(t, self._vertical(block), block.still)
        return self._finalise(final=False)

    def _level(self) -> list[VerticalMotion]:
        """Level the AHRS on the quietest held block, then fuse every held block."""
        # Levelled on the first quiet block: the AHRS fuses the held blocks from there on
        # (one at another pose would start it that far off). Quiet: within twice the
        # quietest block's spread.
        quietest = min(b.accel_spread for _, b in self._held)
        start = next(i for i, (_, b) in enumerate(self._held) if b.accel_spread <= 2 * quietest)
        self._tracker = OrientationTracker(self.sample_rate_hz)
        self._tracker.prime(self._held[start][1].accel.mean(axis=0))
        held, self._held = self._held, []
        # The offset as measured over all of them, not as it stood at each block.
        offset = self._still.gyro_offset
        assert offset is not None
        out = []
        for t, b in held:
            self._append(t, self._vertical(replace(b, gyro_offset=offset)), b.still)
            out.append(self._finalise(final=False))
        return out

    def _vertical(self, block: StillnessBlock) -> FloatArray:
        assert self._tracker is not None
        _, earth = self._tracker.update(block.accel, block.gyro - block.gyro_offset)
        return earth[:, 2].copy()

    def _append(self, t: FloatArray, accel: FloatArray, still: BoolArray) -> None:
        self._t = np.concatenate([self._t, t])
        self._a = np.concatenate([self._a, accel])
        self._quiet = np.concatenate([self._quiet, still])

    # -- phases ----------------------------------------------------------------------------

    def _finalise(self, *, final: bool) -> VerticalMotion:
        """Output every phase that ends at a settled turnaround or rest."""
        n = len(self._t)
        lo = self._anchor - self._first
        if n - lo < 2:
            return VerticalMotion.empty()
        settled = n - 1 if final else n - 1 - self._lag
        if settled <= lo:
            return VerticalMotion.empty()
        turns, velocity, self._proxy = self._turns()
        self._proxy_velocity = velocity
        # The proxy is a measure only where its zero-phase filter has the stream on both
        # sides: not in the stream's first and (at its end) last proxy_lag_s.
        self._proxy[: max(0, self._lag - self._first)] = math.nan
        if final:
            self._proxy[max(0, n - self._lag) :] = math.nan
        rests = self._rests(lo, settled, velocity)
        points: list[tuple[int, int | None]] = sorted(
            [(k, None) for k in turns if lo + self._step <= k <= settled]
            + [(r0, r1) for r0, r1 in rests],
            key=lambda item: item[0],
        )
        parts = self._through(points, settled, final=final)
        lo = self._anchor - self._first
        if final:
            if lo < n - 1:
                parts.append(self._phase(lo, n - 1, open_end=not self._quiet[-1]))
            if self._anchor - self._first == n - 1:
                parts.append(self._tail())  # each phase leaves its end to the next
        elif self._t[settled] - self._t[lo] > self.settings.max_phase_s:
            # No turn, no rest for so long: cut where the body moved least.
            quietest = lo + 1 + int(np.argmin(np.abs(velocity[lo + 1 : settled + 1])))
            parts.append(self._phase(lo, quietest))
        self._trim()
        return VerticalMotion.concatenate(parts)

    def _through(
        self, points: list[tuple[int, int | None]], settled: int, *, final: bool
    ) -> list[VerticalMotion]:
        """The phases (and rests) from the anchor through the sorted ``points``: turns
        ``(k, None)`` and rests ``(r0, r1)``, buffer indices."""
        parts: list[VerticalMotion] = []
        span = self.settings.rest_span_s
        i = 0
        while i < len(points):
            lo = self._anchor - self._first
            point, rest_end = points[i]
            if (rest_end is None and point <= lo) or (rest_end is not None and rest_end <= lo):
                i += 1
                continue
            if self._anchor_at_rest and rest_end is None:
                # From a rest, the next rest close enough ends one movement: its drift
                # is taken out between two exact zeros, not at the turns in between.
                nxt = next((j for j in range(i, len(points)) if points[j][1] is not None), None)
                if nxt is not None and self._t[points[nxt][0]] - self._t[lo] <= span:
                    i = nxt
                    continue
                if nxt is None and not final and self._t[settled] - self._t[lo] < span:
                    break  # a rest may yet come: wait for it
            if rest_end is None:
                parts.append(self._phase(lo, point))
            else:
                if point > lo:
                    parts.append(self._phase(lo, point))
                parts.append(self._rest(max(lo, point), rest_end))
            i += 1
        return parts

    def _turns(self) -> tuple[list[int], FloatArray, FloatArray]:
        """Turnarounds (buffer indices), the proxy's velocity (n,) m/s and height (n,) m."""
        step = self._step
        a = self._a
        n = len(a)
        # Decimate by block means (the proxy only needs rates up to 3 Hz).
        m = n // step
        coarse = a[: m * step].reshape(m, step).mean(axis=1) if m else np.empty(0)
        rate = self.sample_rate_hz / step
        proxy = height_proxy(coarse, rate)
        velocity_coarse = np.gradient(proxy, 1.0 / rate) if len(proxy) > 1 else np.zeros(m)
        centres = np.arange(m) * step + 0.5 * (step - 1)
        velocity = np.interp(np.arange(n), centres, velocity_coarse) if m else np.zeros(n)
        height = np.interp(np.arange(n), centres, proxy) if m else np.zeros(n)
        swing = max(self.settings.swing_m, SWING_SHARE * typical_swing(proxy))
        turns = []
        refined: dict[tuple[int, int, bool], int] = {}
        for k in swing_extremes(proxy, swing):
            # Back to the full rate: the extreme of the integrated block it lies in. The
            # same samples give the same answer, so a turn found at the last block is
            # not worked out again (its key: the samples' global indices, and which way).
            lo, hi = max(0, (k - 1) * step), min(n, (k + 2) * step)
            top = bool(proxy[k] >= proxy[max(k - 1, 0)])
            key = (self._first + lo, self._first + hi, top)
            turn = self._refined.get(key)
            if turn is None:
                local = cumulative_trapezoid(
                    cumulative_trapezoid(a[lo:hi] - a[lo:hi].mean(), self._t[lo:hi]),
                    self._t[lo:hi],
                )
                turn = self._first + lo + int(np.argmax(local) if top else np.argmin(local))
            refined[key] = turn
            turns.append(turn - self._first)
        self._refined = refined  # what the next block may find again; the rest is gone
        # Two extremes of the coarse proxy can land on one sample; a turn needs a phase.
        out: list[int] = []
        for k in sorted(set(turns)):
            if not out or k - out[-1] >= self._step:
                out.append(k)
        return out, velocity, height

    def _rests(self, lo: int, settled: int, proxy: FloatArray) -> list[tuple[int, int]]:
        """Still runs of min_rest_s in (lo, settled] along which the body is not moving.

        An accelerometer cannot tell a steady eccentric from a hold; the velocity can:
        the proxy's drift-free velocity (``proxy`` (n,) m/s) must stay under
        ``rest_velocity_mps`` all along the run, or under PROXY_REST_SHARE times that
        while the velocity integrated from the anchor (zero there, with the last phase's
        bias) stays under it.
        """
        s = self.settings
        quiet = self._quiet[: settled + 1].copy()
        quiet[: lo + 1] = False
        if not quiet.any():
            return []
        t, a = self._t[lo : settled + 1], self._a[lo : settled + 1] - self._bias
        velocity = np.zeros(settled + 1)
        velocity[lo:] = cumulative_trapezoid(a, t)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
        need = max(2, round(s.min_rest_s * self.sample_rate_hz))
        out = []
        for r0, r1 in zip(edges[::2], edges[1::2] - 1, strict=True):
            long_enough = r1 - r0 + 1 >= need or (r1 == settled and self._anchor_at_rest)
            if not long_enough:
                continue
            run = velocity[r0 : r1 + 1]
            # A still-looking run is at rest when the drift-free proxy stands still along
            # it; or when it nearly does (its filter bends a hold after a rise) and the
            # velocity integrated from the anchor holds at zero along it. A slow, steady
            # eccentric looks as still to an accelerometer, but moves in the proxy.
            drift_free = float(np.abs(proxy[r0 : r1 + 1]).max())
            near = drift_free < PROXY_REST_SHARE * s.rest_velocity_mps
            integral_zero = float(np.abs(run).max()) < s.rest_velocity_mps
            if drift_free < s.rest_velocity_mps or (near and integral_zero):
                out.append((int(r0), int(r1)))
        return out

    def _phase(self, lo: int, hi: int, *, open_end: bool = False) -> VerticalMotion:
        """Samples lo..hi-1 of a phase that starts and ends at zero velocity (unless open)."""
        t = self._t[lo : hi + 1]
        a = self._a[lo : hi + 1]
        v = cumulative_trapezoid(a, t)
        span = float(t[-1] - t[0])
        if open_end:
            v = cumulative_trapezoid(a - self._bias, t)
        elif span > 0:
            self._bias = float(v[-1]) / span
            v = v - v[-1] * (t - t[0]) / span
        z = self._height + cumulative_trapezoid(v, t)
        out = VerticalMotion(
            t[:-1].copy(),
            v[:-1],
            z[:-1],
            np.zeros(len(t) - 1, dtype=bool),
            proxy=self._proxy[lo:hi].copy(),
        )
        self._height = float(z[-1])
        self._anchor = self._first + hi
        self._anchor_at_rest = False
        return out

    def _rest(self, lo: int, hi: int) -> VerticalMotion:
        """Samples lo..hi-1 at rest: velocity 0, height held."""
        size = hi - lo
        out = VerticalMotion(
            self._t[lo:hi].copy(),
            np.zeros(size),
            np.full(size, self._height),
            np.ones(size, bool),
            proxy=self._proxy[lo:hi].copy(),
        )
        self._bias = float(np.mean(self._a[lo : hi + 1]))
        self._anchor = self._first + hi
        self._anchor_at_rest = True
        return out

    def _tail(self) -> VerticalMotion:
        """The stream's last sample (each phase leaves its end to the next)."""
        i = len(self._t) - 1
        out = VerticalMotion(
            self._t[i:].copy(),
            np.zeros(1),
            np.full(1, self._height),
            self._quiet[i:].copy(),
            proxy=self._proxy[i:].copy(),
        )
        self._anchor = self._first + len(self._t)
        return out

    def _trim(self) -> None:
        keep_from = (
            self._anchor - self._first - round(self.settings.proxy_history_s * self.sample_rate_hz)
        )
        keep_from = min(keep_from, len(self._t) - 1)
        if keep_from > 0:
            self._t = self._t[keep_from:]
            self._a = self._a[keep_from:]
            self._quiet = self._quiet[keep_from:]
            self._proxy_velocity = self._proxy_velocity[keep_from:]
            self._proxy = self._proxy[keep_from:]
            self._first += keep_from


def vertical_motion(
    t: npt.ArrayLike,
    accel: npt.ArrayLike,
    gyro: npt.ArrayLike,
    sample_rate_hz: float,
    settings: MotionSettings | None = None,
) -> VerticalMotion:
    """Batch form of :class:`VerticalVelocityEstimator` (the same answers, one call).

    ``t`` (n,) s, ``accel`` (n, 3) m/s² and ``gyro`` (n, 3) rad/s in the sensor frame.
    """
    est = VerticalVelocityEstimator(sample_rate_hz, settings)
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
