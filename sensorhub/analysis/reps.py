"""Rep detection and per-rep metrics from the vertical motion of the lifted body.

The velocity is cut into phases: maximal runs of samples moving up (v > 0) or down
(v < 0). A phase counts when it travels at least :data:`MIN_PHASE_M` (noise, fidgets and
footsteps travel less). Its ends are placed where the speed, rising from the floor it
left (zero, or what drift left of it), crosses three low levels; the crossings are
extended back to zero speed on the assumption that speed grows as a power of the time
since the start (:data:`ONSET_POWER`, :data:`STOP_POWER`; the measured spacing of the
crossings pulls the power half-way). Noisy velocity (a position transducer) is cut into
phases after averaging over ~20 ms, but level crossings of a noisy speed scatter by tens
of milliseconds, and the slow start of a lift lies below the noise: there each end is
placed by a least-squares fit of the same power laws to the raw samples of the phase,
from the end up to where the speed reaches :data:`FIT_FRACTION` of the phase's peak.
Reps are phase patterns:

* hip thrust, bodyweight hip thrust, deadlift (up first): a concentric up-phase, a
  lockout of at least ``min_lockout_s`` (one longer than :data:`HOLD_AT_REST_S` must
  contain rest), then an eccentric down-phase that returns to near the start;
  ``t_start`` = concentric start, ``t_end`` = eccentric end.
* squat (down first): an eccentric down-phase, a bottom turn of at most
  ``max_bottom_s``, then a concentric up-phase back to near the start, followed by the
  lockout; ``t_start`` = eccentric start, ``t_end`` = lockout end: where the next
  movement starts (once it has gone :data:`MIN_PHASE_M`), or -- when nothing moves within
  ``max_lockout_s`` -- the set's typical hold after the concentric end.

Each phase must travel between the exercise's minimum and maximum range of motion and
last a plausible time, so walking, standing up, setting up, re-racking and fidgeting are
not counted: their vertical travel is too small or too large, or they never stop at the
top. A rep is partial when its range of motion is below :data:`PARTIAL_FRACTION` of the
median range of the recent full reps of the same set (none yet: not partial).

Metrics (vertical, of the lifted body, SI units): MCV = rise / concentric duration;
peak velocity = the largest sample velocity in the concentric; MPV = mean velocity from
the concentric start until the acceleration first drops below -g (all of it if it never
does); ROM = rise over the concentric; time under tension = from the first phase's start
to the last phase's end (lockout hold included for up-first lifts, bottom turn for the
squat). Mean power, when a load is given: the mean over the concentric of
``load_kg · (g + a) · v`` with ``a`` the vertical acceleration from the velocity (W).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from sensorhub.analysis._stats import median
from sensorhub.analysis.orientation import G
from sensorhub.analysis.velocity import VerticalMotion

__all__ = ["EXERCISE_LIMITS", "ExerciseLimits", "Rep", "RepDetector", "detect_reps"]

FloatArray = npt.NDArray[np.float64]
_Samples = tuple[FloatArray, FloatArray, FloatArray, FloatArray]
"""Times (s), velocity used for phases (m/s), height (m), raw velocity (m/s); all (n,)."""


@dataclass(frozen=True, slots=True)
class Rep:
    """One detected repetition; times in seconds of the motion's clock, SI units."""

    index: int
    """1-based within the session (sets renumber)."""
    t_start: float
    t_end: float
    eccentric_start: float
    eccentric_end: float
    concentric_start: float
    concentric_end: float
    lockout_start: float
    lockout_end: float
    mcv_mps: float
    peak_velocity_mps: float
    mpv_mps: float
    rom_m: float
    concentric_s: float
    eccentric_s: float
    lockout_hold_s: float
    time_under_tension_s: float
    partial: bool
    mean_power_w: float | None
    """Mean of ``load_kg · (g + a) · v`` over the concentric, W (None without a load)."""


@dataclass(frozen=True, slots=True)
class ExerciseLimits:
    """What a rep of one exercise can look like; metres and seconds."""

    down_first: bool
    min_rom_m: float
    max_rom_m: float
    min_concentric_s: float = 0.1
    max_concentric_s: float = 5.0
    min_eccentric_s: float = 0.15
    max_eccentric_s: float = 6.0
    min_lockout_s: float = 0.0
    """Up-first lifts stop at the top this long at least (a hip thrust's squeeze; a
    footstep never stops)."""
    hold_needs_rest: bool = False
    """A lockout longer than HOLD_AT_REST_S must contain rest (walking with a pelvis
    sensor bounces like small thrusts, and pauses while turning)."""
    max_lockout_s: float = 6.0
    max_bottom_s: float = 3.0
    """Squat: longest turn at the bottom between the eccentric and the concentric."""
    return_tolerance: float = 0.5
    """The other phase of the rep travels the same distance within this fraction."""

    @property
    def max_rep_s(self) -> float:
        """The longest a rep can last, start to end (s)."""
        bottom = self.max_bottom_s if self.down_first else 0.0
        return self.max_concentric_s + self.max_lockout_s + self.max_eccentric_s + bottom


# Ranges of motion: the scenario limits widened a little (partial reps reach down to 30 %
# of a full one; a bodyweight thrust can rise 5 cm when partial).
EXERCISE_LIMITS: Final[dict[str, ExerciseLimits]] = {
    # A thrust's hold at the top must be a rest: without it, the drift of a hold after a
    # failed rep passed as a slow rep (a loaded bar does not walk, but it settles).
    "hip_thrust": ExerciseLimits(
        down_first=False, min_rom_m=0.035, max_rom_m=0.45, min_lockout_s=0.12, hold_needs_rest=True
    ),
    "bodyweight_hip_thrust": ExerciseLimits(
        down_first=False, min_rom_m=0.035, max_rom_m=0.45, min_lockout_s=0.12, hold_needs_rest=True
    ),
    "squat": ExerciseLimits(down_first=True, min_rom_m=0.09, max_rom_m=0.9),
    "deadlift": ExerciseLimits(down_first=False, min_rom_m=0.09, max_rom_m=0.85),
    "romanian_deadlift": ExerciseLimits(down_first=True, min_rom_m=0.09, max_rom_m=0.85),
}

MIN_SPEED_MPS: Final = 0.004
"""Speeds below this (m/s) are taken as noise when placing a phase's ends."""
TAKEOFF_WINDOW_S: Final = 0.3
PLATEAU_S: Final = 0.05
ONSET_POWER: Final = 1.8
"""Prior: near its start a lift's speed grows about as (time since the start)^1.8 ..."""
STOP_POWER: Final = 1.3
"""... and near its end falls about as (time to the stop)^1.3: braking stops it sooner."""
MAX_EXTRAPOLATION_S: Final = 0.3
HISTORY_S: Final = 0.5
SMOOTHING_HALF_S: Final = 0.01
"""Half-width of the moving average applied to a noisy (transducer) velocity, s."""
FIT_FRACTION: Final = 0.25
"""Noisy velocity: an end is fitted on the samples slower than this fraction of the peak;
near the end, where the power law holds."""
FIT_WINDOW_S: Final = 0.5
"""... and at most this long before the speed reaches it (s): a slow rep starts slowly."""
FIT_STEP_S: Final = 0.001
"""Resolution of the fitted end times (s)."""
MIN_PEAK_MPS: Final = 0.15
"""A concentric peaks at least this fast (m/s): even a maximal grind does; a lifter
straightening up after the set, or the bar settling on the rack, rises slower."""
MIN_PHASE_M: Final = 0.02
"""A phase must travel this far to count (m); fidgets and footsteps travel less."""
PARTIAL_FRACTION: Final = 0.6
"""A rep is partial below this share of the set's recent full range, by both measures.
Real sets shrink: a lifter's last squats of ten went 0.54-0.6 of the recent depth by
the integral and 0.6-0.65 by the proxy, and counted; a rep abandoned half-way goes
half of it or less."""
SET_CONTEXT_S: Final = 45.0
"""Reps closer than this (s) are taken as one set for the partial-rep reference, unless
the detector is given the analysis's own set gap (the default set gap is the same)."""
DEFAULT_HOLD_S: Final = 1.0
REST_MEMORY_S: Final = 30.0
"""Rests are remembered this long (s): longer than any lockout that asks for one."""
REST_JOIN_S: Final = 0.05
"""Rests this close (s) are one: the estimator leaves a sample between its rest phases."""
HOLD_AT_REST_S: Final = 0.4
"""A lockout this long (s) must contain rest; shorter ones may be too short to detect."""
REFERENCE_REPS: Final = 5
RATIO_PHASES: Final = 10
"""Phases whose travel over proxy swing is kept to measure a phase the integral cannot."""
MIN_RATIOS: Final = 4
"""Phases measured both ways before the proxy may stand in for the integral."""
MAX_STOP_S: Final = 1.5
"""A movement that stops half-way for up to this long (s) and goes on the same way is one
phase: a pause in a descent, a sticking point in a concentric."""
STREAM_EDGE_S: Final = 0.1
"""A phase starting this close to the stream's first sample may have begun before it."""
MIN_PEAK_SHARE: Final = 0.1
"""A concentric reaches its peak speed this far into it at the earliest: it starts from
rest at the bottom (the real ones on the development set peak at 0.19-0.69 of the way)."""


@dataclass(frozen=True, slots=True)
class _Phase:
    """A run of samples moving one way; ends at the interpolated zero crossings."""

    up: bool
    t0: float
    t1: float
    z0: float
    z1: float
    peak: float  # largest |v|, m/s
    mpv: float  # up phases: mean propulsive velocity, m/s
    power: float | None  # up phases with a load: mean power, W
    cut: bool = False  # cut short by the start or end of the stream: its travel says little
    p0: float = 0.0  # the drift-free height proxy at the ends (the heights when None)
    p1: float = 0.0
    peak_share: float = 0.5  # how far into the phase its peak speed comes, 0..1

    @property
    def travel(self) -> float:
        return abs(self.z1 - self.z0)

    @property
    def swing(self) -> float:
        """How far the proxy went: travel measured a second, drift-free way."""
        return abs(self.p1 - self.p0)


class _Smoother:
    """Centred moving average of 2·half + 1 samples over a stream (truncated at the ends).

    Output lags input by ``half`` samples; each window is averaged on its own, so the
    values do not depend on how the stream is batched. Emits (t, averaged v, z, raw v).
    """

    def __init__(self, half: int) -> None:
        self.half = half
        self._t = np.empty(0)
        self._v = np.empty(0)
        self._z = np.empty(0)
        self._next = 0  # index in the buffer of the first sample not yet output

    def push(self, t: FloatArray, v: FloatArray, z: FloatArray) -> _Samples:
        self._t = np.concatenate([self._t, t])
        self._v = np.concatenate([self._v, v])
        self._z = np.concatenate([self._z, z])
        return self._emit(len(self._t) - self.half)

    def flush(self) -> _Samples:
        return self._emit(len(self._t))

    def _emit(self, stop: int) -> _Samples:
        h, start = self.half, self._next
        if stop <= start:
            return np.empty(0), np.empty(0), np.empty(0), np.empty(0)
        n = len(self._v)
        lo = np.maximum(np.arange(start, stop) - h, 0)
        hi = np.minimum(np.arange(start, stop) + h + 1, n)
        out = np.array([self._v[a:b].mean() for a, b in zip(lo, hi, strict=True)])
        result = (self._t[start:stop], out, self._z[start:stop], self._v[start:stop])
        keep = max(0, stop - h)
        self._t, self._v, self._z = self._t[keep:], self._v[keep:], self._z[keep:]
        self._next = stop - keep
        return result


@dataclass
class _Candidate:
    """A squat rep waiting for its lockout to end."""

    down: _Phase
    up: _Phase


def _in_scale_of(swing: float, rise: _Phase) -> float | None:
    """A fall of the proxy by ``swing`` in metres of the rise after it (its travel per
    unit of its swing); None unless both the fall and the rise's swing are real."""
    if not (math.isfinite(swing) and swing > 0 and math.isfinite(rise.swing) and rise.swing > 0):
        return None
    return swing * rise.travel / rise.swing


class RepDetector:
    """Streaming rep detection: feed :class:`VerticalMotion` pieces in time order.

    Phases are the stretches between the turnarounds of the height (a top or a bottom it
    has come back from by :data:`MIN_PHASE_M`) and rests: a wobble in the slow end of a
    movement never splits it. Each rep is returned by the :meth:`update` call whose
    samples complete it (up-first lifts: the eccentric's end, once the next movement or
    a rest shows it is over; the squat: the lockout's end). :meth:`flush` ends the
    recording. :func:`detect_reps` is the batch form with the same answers.
    """

    def __init__(
        self, exercise: str, *, load_kg: float | None = None, set_gap_s: float = SET_CONTEXT_S
    ) -> None:
        if exercise not in EXERCISE_LIMITS:
            raise ValueError(
                f"exercise {exercise!r} unknown; allowed: {', '.join(EXERCISE_LIMITS)}"
            )
        if load_kg is not None and not (math.isfinite(load_kg) and load_kg >= 0):
            raise ValueError(f"load_kg = {load_kg!r}: must be a non-negative number of kg")
        if not (math.isfinite(set_gap_s) and set_gap_s > 0):
            raise ValueError(f"set_gap_s = {set_gap_s!r}: must be a positive number of s")
        self.exercise = exercise
        self.load_kg = load_kg
        self.set_gap_s = set_gap_s
        """Reps closer than this (s) are one set, whose recent reps judge a partial one."""
        self.limits = EXERCISE_LIMITS[exercise]
        # Samples from HISTORY_S before the open phase's start on.
        self._t: FloatArray = np.empty(0)
        self._v: FloatArray = np.empty(0)
        self._z: FloatArray = np.empty(0)
        self._raw: FloatArray = np.empty(0)  # velocity before averaging (noisy input)
        self._p: FloatArray = np.empty(0)  # the motion's drift-free proxy (its height if none)
        self._rest: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)
        self._start = 0  # buffer index where the open phase starts (an extreme, a rest's end)
        self._scanned = 0  # buffer index of the first sample not yet scanned
        self._hi = 0  # highest and lowest sample of the open phase so far
        self._lo = 0
        self._dir = 0  # +1 rising, -1 falling, 0 not yet known
        self._first_t: float | None = None  # the stream's first sample time
        self._pending_up: _Phase | None = None
        self._pending_down: _Phase | None = None
        self._candidate: _Candidate | None = None
        self._count = 0
        self._recent: deque[tuple[Rep, float]] = deque(maxlen=32)  # with its concentric's swing
        self._eps = MIN_SPEED_MPS  # speed level that places phase ends, m/s
        self._smoother: _Smoother | None = None
        self._rests: deque[tuple[float, float]] = deque()
        self._rest_open = False
        self._wobbled = False  # a phase too small for any rep came since the last one
        self._rejected: tuple[_Phase, _Phase] | None = None  # the last pair not a rep
        self._last: _Phase | None = None  # the last phase bigger than a wobble
        self._ratios: deque[float] = deque(maxlen=RATIO_PHASES)  # travel / swing, recent

    def update(self, motion: VerticalMotion) -> list[Rep]:
        """Take the next samples; return the reps they complete."""
        if len(motion.t) == 0:
            return []
        if self._first_t is None:
            self._first_t = float(motion.t[0])
        t, v, z = motion.t, motion.velocity, motion.position
        self._note_rests(t, motion.at_rest)
        if motion.velocity_noise_mps > 0 or self._smoother is not None:
            if self._smoother is None:
                self._start_smoothing(motion)
            assert self._smoother is not None
            return self._process(*self._smoother.push(t, v, z), motion.at_rest, smoothed=True)
        return self._process(t, v, z, v, motion.at_rest, proxy=motion.proxy)

    def flush(self) -> list[Rep]:
        """End of the recording: finish the phase in progress and any waiting rep."""
        reps: list[Rep] = []
        if self._smoother is not None:
            t, v, z, raw = self._smoother.flush()
            reps += self._process(t, v, z, raw, None, smoothed=True)
        n = len(self._t)
        if n > self._start + 1:
            end = self._hi if self._dir > 0 else self._lo if self._dir < 0 else n - 1
            end = max(end, self._start + 1)
            reps += self._close(self._start, end, cut=True)
        if n:
            reps += self._retry_at_end(float(self._t[-1]))
        if self._candidate is not None:
            reps += self._finish_squat(None)
        reps += self._finish_at_lockout()
        self._t, self._v, self._z, self._raw = np.empty(0), np.empty(0), np.empty(0), np.empty(0)
        self._p = np.empty(0)
        self._rest = np.empty(0, dtype=bool)
        self._start = self._scanned = self._hi = self._lo = 0
        return reps

    def undecided_from(self) -> float | None:
        """The earliest start (s) a rep still to come can have; None before any sample.

        A rep is returned some seconds after it ends, once what follows shows it is over;
        until then its first phase is waiting here, or still open. Whoever closes sets by
        time must not close one before this: the rep in flight may belong to it.
        """
        if len(self._t) == 0:
            return None
        open_start = float(self._t[self._start])
        if self._smoother is not None:
            open_start -= FIT_WINDOW_S  # a fitted takeoff may lie before the turnaround
        waiting = [open_start]
        waiting += [p.t0 for p in (self._pending_up, self._pending_down) if p is not None]
        if self._candidate is not None:
            waiting.append(self._candidate.down.t0)
        last = self._last
        lost_descent = self.limits.down_first and self._pending_down is None
        if lost_descent and last is not None and last.up and not last.cut:
            # A descent the integral lost (see _lost_descent) starts at the last top.
            waiting.append(max(last.t1, open_start - self.limits.max_eccentric_s))
        return min(waiting)

    def _note_rests(self, t: FloatArray, at_rest: npt.NDArray[np.bool_]) -> None:
        """Remember the recent intervals of rest (s), joining those that touch."""
        edges = np.flatnonzero(np.diff(np.concatenate([[False], at_rest, [False]]).astype(np.int8)))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            t0, t1 = float(t[a]), float(t[b - 1])
            touching = a == 0 and self._rest_open
            if self._rests and (touching or t0 - self._rests[-1][1] <= REST_JOIN_S):
                t0 = self._rests.pop()[0]
            self._rests.append((t0, t1))
        self._rest_open = bool(at_rest[-1])
        while self._rests and self._rests[0][1] < float(t[0]) - REST_MEMORY_S:
            self._rests.popleft()

    def _rested(self, t0: float, t1: float) -> bool:
        """Whether the body was at rest at some time within [t0, t1]."""
        return any(a <= t1 and b >= t0 for a, b in reversed(self._rests))

    def _start_smoothing(self, motion: VerticalMotion) -> None:
        """Noisy velocity (a transducer): average it over ~20 ms, set the levels above it."""
        dt = float(np.median(np.diff(motion.t))) if len(motion.t) > 1 else 0.01
        half = max(1, round(SMOOTHING_HALF_S / dt)) if dt > 0 else 1
        self._smoother = _Smoother(half)
        noise = motion.velocity_noise_mps / math.sqrt(2 * half + 1)
        self._eps = max(MIN_SPEED_MPS, 2.0 * noise)

    def _process(
        self,
        t_new: FloatArray,
        v_new: FloatArray,
        z_new: FloatArray,
        raw_new: FloatArray,
        rest_new: npt.NDArray[np.bool_] | None,
        *,
        smoothed: bool = False,
        proxy: FloatArray | None = None,
    ) -> list[Rep]:
        if len(t_new) == 0:
            return []
        if rest_new is None or smoothed:
            # A transducer measures height: its turnarounds alone split the phases (its
            # slow samples are noise around zero, not rests to cut at).
            rest_new = np.zeros(len(t_new), dtype=bool)
        self._t = np.concatenate([self._t, t_new])
        self._v = np.concatenate([self._v, v_new])
        self._z = np.concatenate([self._z, z_new])
        self._raw = np.concatenate([self._raw, raw_new])
        self._p = np.concatenate([self._p, z_new if proxy is None else proxy])
        self._rest = np.concatenate([self._rest, rest_new])
        reps = self._scan()
        reps += self._check_lockout(now=float(self._t[-1]), moving_since=self._moving_since())
        self._trim()
        return reps

    def _scan(self) -> list[Rep]:
        """Walk the new samples: a rest or a confirmed turnaround closes the open phase."""
        reps: list[Rep] = []
        z, rest = self._z.tolist(), self._rest
        i = self._scanned
        n = len(z)
        while i < n:
            if rest[i]:
                if i - 1 > self._start:
                    reps += self._close(self._start, i - 1)
                self._restart(i)
                i += 1
                continue
            zi = z[i]
            if zi > z[self._hi]:
                self._hi = i
            if zi < z[self._lo]:
                self._lo = i
            if self._dir >= 0 and zi < z[self._hi] - MIN_PHASE_M:
                top = self._hi
                if self._dir > 0 or top > self._start:
                    reps += self._close(self._start, top)
                self._start, self._dir, self._lo = top, -1, i
            elif self._dir <= 0 and zi > z[self._lo] + MIN_PHASE_M:
                bottom = self._lo
                if self._dir < 0 or bottom > self._start:
                    reps += self._close(self._start, bottom)
                self._start, self._dir, self._hi = bottom, 1, i
            i += 1
        self._scanned = n
        return reps

    def _restart(self, i: int) -> None:
        self._start = self._hi = self._lo = i
        self._dir = 0

    def _moving_since(self) -> float:
        """When the open movement began (inf while at rest or not yet moving)."""
        if len(self._t) == 0 or self._rest[-1]:
            return math.inf
        w = np.abs(self._v[self._start :])
        moving = np.flatnonzero(w > max(3.0 * self._eps, 0.02))
        return float(self._t[self._start + int(moving[0])]) if len(moving) else math.inf

    def _trim(self) -> None:
        """Keep HISTORY_S before the open phase; a long rest keeps only its last HISTORY_S."""
        t = self._t
        if len(t) == 0:
            return
        anchor = self._start
        if self._rest[-1] and self._start == len(t) - 1:
            anchor = len(t) - 1
        keep = int(np.searchsorted(t, t[anchor] - HISTORY_S))
        keep = min(keep, anchor)
        if keep <= 0:
            return
        self._t, self._v, self._z = t[keep:], self._v[keep:], self._z[keep:]
        self._raw, self._rest, self._p = self._raw[keep:], self._rest[keep:], self._p[keep:]
        self._start -= keep
        self._scanned -= keep
        self._hi = max(0, self._hi - keep)
        self._lo = max(0, self._lo - keep)

    # -- phases ----------------------------------------------------------------------------

    def _close(self, a: int, b: int, *, cut: bool = False) -> list[Rep]:
        """The phase over samples a..b has ended; make it a phase if it travelled."""
        t, v, z, raw = self._t, self._v, self._z, self._raw
        if b <= a:
            return []
        s = 1 if z[b] > z[a] else -1
        reps = self._break_lockout(a, b)
        eps = self._eps
        w = s * v  # positive where the phase moves its own way
        stop = b + 1
        peak = float(w[a:stop].max())
        fast = np.flatnonzero(w[a:stop] > max(3.0 * eps, 0.1 * peak))
        if len(fast) == 0 or peak <= 0:
            return reps
        first, last = a + int(fast[0]), a + int(fast[-1])
        n = len(t)
        if self._smoother is not None:
            # The fits take the samples of the phase's own sign run: from the last
            # turn of the (averaged) velocity before it gets fast to the first after.
            # A turnaround of the height in a pause may sit anywhere in it; the sign run
            # is where the movement really starts.
            back0 = int(np.searchsorted(t, t[a] - FIT_WINDOW_S))
            before = np.flatnonzero(w[back0 : first + 1] <= 0)
            r0 = back0 + int(before[-1]) if len(before) else back0
            after = np.flatnonzero(w[last:] <= 0)
            r1 = last + int(after[0]) + 1 if len(after) else n
            run_t, run_w = t[r0:r1], s * raw[r0:r1]
            rise = np.flatnonzero(w[r0:r1] >= FIT_FRACTION * peak)
            t0 = _fit_takeoff(run_t, run_w, int(rise[0]), power=ONSET_POWER)
            back = r1 - r0 - 1 - int(rise[-1])
            t1 = -_fit_takeoff(-run_t[::-1], run_w[::-1], back, power=STOP_POWER)
            t1 = min(t1, float(t[min(r1, n - 1)]))  # stopped, at the latest, where it turned
        else:
            t0 = _takeoff(t, w, (a, first), eps, ratio=3.0, power=ONSET_POWER)
            t1 = -_takeoff(
                -t[::-1], w[::-1], (n - 1 - b, n - 1 - last), eps, ratio=3.0, power=STOP_POWER
            )
        if self._smoother is None:
            # The IMU's velocity is zero at its turnarounds by construction: the phase
            # lies between them.
            t0 = max(t0, float(t[a]))
            t1 = min(t1, float(t[b]))
        z0 = float(np.interp(t0, t, z))
        z1 = float(np.interp(t1, t, z))
        if abs(z1 - z0) < MIN_PHASE_M or t1 <= t0:
            return reps
        seg = slice(max(a - 1, 0), min(b + 2, n))
        phase = self._phase(s > 0, (t0, t1), (z0, z1), t[seg], v[seg])
        starts_stream = self._first_t is not None and t0 - self._first_t < STREAM_EDGE_S
        p0 = float(np.interp(t0, t, self._p))
        p1 = float(np.interp(t1, t, self._p))
        phase = replace(phase, cut=cut or starts_stream, p0=p0, p1=p1)
        return reps + self._on_phase(self._measured(phase))

    def _measured(self, phase: _Phase) -> _Phase:
        """The phase with a travel no rep could have (the integral carried a drift
        through a long, slow phase) measured instead by its proxy swing, scaled by how
        far the recent phases went per unit of swing; the others teach that scale.

        The proxy bends slow and fast lifts differently, so it is a stand-in only where
        the integral is out of range, and only once a few phases have shown the scale.
        """
        lim = self.limits
        swing = phase.swing
        if not (math.isfinite(swing) and swing > 0) or phase.cut:
            return phase
        if phase.travel <= lim.max_rom_m:
            if phase.travel >= lim.min_rom_m:
                self._ratios.append(phase.travel / swing)
            return phase
        if len(self._ratios) < MIN_RATIOS:
            return phase
        travel = swing * median(np.asarray(self._ratios, dtype=np.float64))
        return replace(phase, z1=phase.z0 + (travel if phase.up else -travel))

    def _phase(
        self,
        up: bool,
        times: tuple[float, float],
        heights: tuple[float, float],
        t: FloatArray,
        v: FloatArray,
    ) -> _Phase:
        """A phase from ``times[0]`` to ``times[1]`` (s); samples ``t``, ``v`` around it."""
        (t0, t1), (z0, z1) = times, heights
        inside = (t > t0) & (t < t1)
        vin = v[inside]
        peak, share = 0.0, 0.5
        if len(vin):
            fastest = int(np.argmax(np.abs(vin)))
            peak = abs(float(vin[fastest]))
            share = (float(t[inside][fastest]) - t0) / (t1 - t0)
        mpv = (z1 - z0) / (t1 - t0)
        power = None
        if up and len(vin) >= 2:
            tin = t[inside]
            acc = np.gradient(vin, tin)
            brake = np.flatnonzero(acc < -G)
            if len(brake) and brake[0] > 0:
                # Propulsive part: up to where the bar would coast (deceleration beyond g).
                k = int(brake[0])
                tp = tin[k]
                zp = float(np.interp(tp, tin, _cumulative(tin, vin, z0, t0)))
                mpv = (zp - z0) / (tp - t0) if tp > t0 else mpv
            if self.load_kg is not None:
                power = float(np.mean(self.load_kg * (G + acc) * vin))
        elif up and self.load_kg is not None:
            power = 0.0
        return _Phase(up, t0, t1, z0, z1, peak, mpv, power, peak_share=share)

    # -- reps ------------------------------------------------------------------------------

    def _on_phase(self, phase: _Phase) -> list[Rep]:
        lim = self.limits
        reps: list[Rep] = []
        if phase.travel < 0.5 * lim.min_rom_m:
            # A wobble or a settle between the phases of a rep (the bar finding its
            # lockout, a stop half-way): too small to be a phase of any rep, so it
            # leaves the phase waiting for its other half where it is.
            self._wobbled = True
            return reps
        phase = self._resume(phase)
        self._rejected = None
        last, self._last = self._last, phase
        if lim.down_first:
            if not phase.up:
                self._pending_down = phase
                return reps
            down, self._pending_down = self._pending_down, None
            if down is None:
                down = self._lost_descent(last, phase)
            elif not self._squat_shape(down, phase):
                down = self._slow_bottom(down, phase) or down
            if down is not None and self._squat_shape(down, phase):
                self._candidate = _Candidate(down, phase)
            elif down is not None:
                self._rejected = (down, phase)
            return reps
        if phase.up:
            up, self._pending_up = self._pending_up, phase
            down = self._lost_descent(up, phase)
            if up is not None and down is not None and self._thrust_shape(up, down):
                reps.append(self._make(up, down, up.t1, down.t0))
            return reps
        up, self._pending_up = self._pending_up, None
        if up is not None and self._thrust_shape(up, phase):
            reps.append(self._make(up, phase, up.t1, phase.t0))
        elif up is not None:
            self._rejected = (up, phase)
        return reps

    def _lost_descent(self, before: _Phase | None, up: _Phase) -> _Phase | None:
        """The descent between a rise and the next one, which the integral lost: a slow
        lowering (a Romanian deadlift's four seconds down) moves the bar with a few
        hundredths of a g, below what a tilt leaks into the vertical, while the
        drift-free proxy still shows it went down. Measured by its proxy swing in the
        scale of the rise after it; None where the proxy does not show one."""
        if before is None or not before.up or before.cut or up.cut:
            return None
        drop = _in_scale_of(before.p1 - up.p0, up)
        if drop is None:
            return None
        return _Phase(
            False,
            before.t1,
            up.t0,
            before.z1,
            before.z1 - drop,
            0.0,
            0.0,
            None,
            p0=before.p1,
            p1=up.p0,
        )

    def _slow_bottom(self, down: _Phase, up: _Phase) -> _Phase | None:
        """The descent before ``up`` carried on to it where the integral saw it stop: the
        slow last part of a lowering, in the proxy but not the integral. The descent
        then reaches the rise, measured as :meth:`_lost_descent` measures; None where
        the proxy did not go on down."""
        more = _in_scale_of(down.p1 - up.p0, up)
        if more is None:
            return None
        drop = (down.p0 - up.p0) * up.travel / up.swing
        return replace(down, t1=up.t0, z1=down.z0 - drop, p1=up.p0)

    def _retry_at_end(self, end: float) -> list[Rep]:
        """The last two phases, turned down as a rep, again now that the stream is known
        to have ended with the second: cut short by the end, its travel says little (the
        recording stopped in the last concentric)."""
        rejected, self._rejected = self._rejected, None
        if rejected is None or rejected[1].t1 < end - STREAM_EDGE_S:
            return []
        first, second = rejected[0], replace(rejected[1], cut=True)
        if self.limits.down_first:
            if self._candidate is None and self._squat_shape(first, second):
                self._candidate = _Candidate(first, second)
            return []
        return (
            [self._make(first, second, first.t1, second.t0)]
            if self._thrust_shape(first, second)
            else []
        )

    def _resume(self, phase: _Phase) -> _Phase:
        """A phase that goes on the way the waiting one went, with only a wobble between
        (a stop half-way down, a sticking point), is the same movement: one phase."""
        wobbled, self._wobbled = self._wobbled, False
        waiting = self._pending_up if phase.up else self._pending_down
        if not wobbled or waiting is None or phase.t0 - waiting.t1 > MAX_STOP_S:
            return phase
        return _Phase(
            phase.up,
            waiting.t0,
            phase.t1,
            waiting.z0,
            phase.z1,
            max(waiting.peak, phase.peak),
            waiting.mpv if phase.up else phase.mpv,
            _mean_power(waiting, phase),
            cut=waiting.cut or phase.cut,
            p0=waiting.p0,
            p1=phase.p1,
        )

    def _plausible(self, up: _Phase, down: _Phase) -> bool:
        lim = self.limits
        rise, drop = up.travel, down.travel
        # A phase cut short by the stream's start or end cannot be judged by its travel:
        # a session started in the first descent still has the rep's concentric, and one
        # stopped in the last concentric still has the rep. The phase cut short is the
        # shorter one: a recording that ends in a rise higher than the drop
        # before it ends in something else (the bar lifted to the rack).
        cut = (up.cut and rise <= drop) or (down.cut and drop <= rise)
        tolerance = lim.return_tolerance
        # Either measure may say it returned: the integral (whose slow stretches a hold
        # can swallow) or the drift-free proxy (which a tempo bends).
        returns = (
            cut
            or abs(rise - drop) <= tolerance * max(rise, drop)
            or abs(up.swing - down.swing) <= tolerance * max(up.swing, down.swing)
        )
        return (
            self._concentric(up)
            and returns
            and lim.min_eccentric_s <= down.t1 - down.t0 <= lim.max_eccentric_s
        )

    def _concentric(self, up: _Phase) -> bool:
        """The up phase could be a rep's concentric: its rise, peak speed and duration."""
        lim = self.limits
        return (
            lim.min_rom_m <= up.travel <= lim.max_rom_m
            and up.peak >= MIN_PEAK_MPS
            and lim.min_concentric_s <= up.t1 - up.t0 <= lim.max_concentric_s
        )

    def _finish_at_lockout(self) -> list[Rep]:
        """Up-first lifts: a recording that ends in the lockout of a full concentric
        ends with that rep done; its eccentric is left out of the record.

        A rise that runs into the stream's end has no turnaround after it to take the
        integral's drift out: it must also rise like a lift, from rest to a peak speed
        later in it (:data:`MIN_PEAK_SHARE`), not start at its fastest (a knock the
        integral carried on, spread over what follows as a slow "rise")."""
        up, self._pending_up = self._pending_up, None
        if up is None or self.limits.down_first or not len(self._t):
            return []
        end = float(self._t[-1])
        lim = self.limits
        if not (
            self._concentric(up)
            and lim.min_lockout_s <= end - up.t1 <= lim.max_lockout_s
            and up.peak_share >= MIN_PEAK_SHARE
        ):
            return []
        down = _Phase(False, end, end, up.z1, up.z1, 0.0, 0.0, None, cut=True, p0=up.p1, p1=up.p1)
        return [self._make(up, down, up.t1, end)]

    def _thrust_shape(self, up: _Phase, down: _Phase) -> bool:
        hold = down.t0 - up.t1
        lim = self.limits
        if not (lim.min_lockout_s <= hold <= lim.max_lockout_s and self._plausible(up, down)):
            return False
        # A long hip-thrust hold is still: not a pause in the bounce of a walk while
        # turning round. (A deadlift's lockout is the bar held in the hands: no such walk.)
        return not lim.hold_needs_rest or hold < HOLD_AT_REST_S or self._rested(up.t1, down.t0)

    def _squat_shape(self, down: _Phase, up: _Phase) -> bool:
        bottom = up.t0 - down.t1
        # The ends are extrapolated, so a turn without a pause may overlap a little.
        return -0.1 <= bottom <= self.limits.max_bottom_s and self._plausible(up, down)

    def _check_lockout(self, *, now: float, moving_since: float) -> list[Rep]:
        """Squat: the lockout ends where the next movement starts, once it has gone
        :data:`MIN_PHASE_M`; or after max_lockout_s with nothing moving."""
        cand = self._candidate
        if cand is None:
            return []
        z = self._z
        if len(z) and not self._rest[-1]:
            moved = np.abs(z[self._start :] - z[self._start]).max()
            if moved >= MIN_PHASE_M:
                return self._finish_squat(float(self._t[self._start]))
        limit = cand.up.t1 + self.limits.max_lockout_s
        if now >= limit and moving_since >= limit:
            return self._finish_squat(None)
        return []

    def _break_lockout(self, a: int, b: int) -> list[Rep]:
        """Squat: a phase over samples a..b that moved ends the lockout where it began."""
        if self._candidate is None:
            return []
        if np.abs(self._z[a : b + 1] - self._z[a]).max() < MIN_PHASE_M:
            return []
        return self._finish_squat(float(self._t[a]))

    def _finish_squat(self, after: float | None) -> list[Rep]:
        cand = self._candidate
        assert cand is not None
        self._candidate = None
        if after is not None and cand.up.t1 < after <= cand.up.t1 + self.limits.max_lockout_s:
            end = after
        else:
            end = cand.up.t1 + self._typical_hold(cand.up.t0)
        return [self._make(cand.up, cand.down, cand.up.t1, end)]

    def _typical_hold(self, t: float) -> float:
        holds = [
            r.lockout_hold_s
            for r, _ in self._recent
            if t - r.t_end <= self.set_gap_s and r.lockout_hold_s < self.limits.max_lockout_s
        ]
        return median(np.asarray(holds[-REFERENCE_REPS:])) if holds else DEFAULT_HOLD_S

    def _make(self, up: _Phase, down: _Phase, lock0: float, lock1: float) -> Rep:
        rom = up.z1 - up.z0
        tc = up.t1 - up.t0
        start = min(up.t0, down.t0)
        end = max(up.t1, down.t1, lock1) if self.limits.down_first else down.t1
        tut = max(up.t1, down.t1) - start
        self._count += 1
        rep = Rep(
            index=self._count,
            t_start=start,
            t_end=end,
            eccentric_start=down.t0,
            eccentric_end=down.t1,
            concentric_start=up.t0,
            concentric_end=up.t1,
            lockout_start=lock0,
            lockout_end=lock1,
            mcv_mps=rom / tc,
            peak_velocity_mps=up.peak,
            mpv_mps=up.mpv,
            rom_m=rom,
            concentric_s=tc,
            eccentric_s=down.t1 - down.t0,
            lockout_hold_s=lock1 - lock0,
            time_under_tension_s=tut,
            partial=False,
            mean_power_w=up.power,
        )
        # A concentric cut short by the stream's end has no range to judge it by.
        rep = replace(rep, partial=not up.cut and self._is_partial(rep, up.swing))
        self._recent.append((rep, up.swing))
        return rep

    def _is_partial(self, rep: Rep, swing: float) -> bool:
        """ROM well below the recent full reps of the same set (none yet: not partial),
        by the integral and by the drift-free proxy alike: a rep the integral alone
        measures short (a hold that swallowed part of it, a tilt leaking gravity) is not
        taken for a partial."""
        roms: list[float] = []
        swings: list[float] = []
        last_end = rep.t_start
        for r, r_swing in reversed(self._recent):
            if last_end - r.t_end > self.set_gap_s:
                break
            last_end = r.t_start
            if not r.partial:
                roms.append(r.rom_m)
                swings.append(r_swing)
            if len(roms) == REFERENCE_REPS:
                break
        if not roms:
            return False
        short = rep.rom_m < PARTIAL_FRACTION * float(np.median(roms))
        known = [s for s in swings if math.isfinite(s)]
        if not (known and math.isfinite(swing)):
            return short  # near the stream's ends the proxy says nothing
        return short and swing < PARTIAL_FRACTION * float(np.median(known))


def _mean_power(first: _Phase, second: _Phase) -> float | None:
    """Mean power over two phases joined into one, weighted by their durations (W)."""
    if first.power is None or second.power is None:
        return None
    d1, d2 = first.t1 - first.t0, second.t1 - second.t0
    return (first.power * d1 + second.power * d2) / (d1 + d2) if d1 + d2 > 0 else first.power


def _level_crossing(t: FloatArray, w: FloatArray, i: int, level: float) -> float:
    """Time where w rises through ``level`` between samples i - 1 and i (w[i] > level)."""
    if i == 0 or w[i - 1] >= level:
        return float(t[i])
    f = (level - w[i - 1]) / (w[i] - w[i - 1])
    return float(t[i - 1] + f * (t[i] - t[i - 1]))


def _takeoff(
    t: FloatArray, w: FloatArray, span: tuple[int, int], eps: float, *, ratio: float, power: float
) -> float:
    """When a movement of speed ``w`` (run from sample a, fast from ``first``) took off.

    Slow speeds are lost in noise and in what is left of the drift, which may hold the
    speed a little above zero for a while before the movement: the floor it leaves from is
    the median of the slow samples of the run in the 0.3 s before it gets fast, when they
    last at least ``PLATEAU_S``. The takeoff is where the speed, measured from the floor,
    would have been zero (see the power law below).
    """
    a, first = span
    lo = max(a, int(np.searchsorted(t, t[first] - TAKEOFF_WINDOW_S)))
    floor = 0.0
    if first > lo:
        before = w[lo:first]
        flat = before[before < 0.3 * w[first]]
        # A plateau: slow samples lasting a while, not just the foot of the rise.
        if len(flat) and t[lo + len(flat) - 1] - t[lo] >= PLATEAU_S:
            floor = max(0.0, float(np.median(flat)))
    slow = np.flatnonzero(w[a:first] <= floor + eps)
    i = a + int(slow[-1]) + 1 if len(slow) else a
    crossings = []
    for level in (eps, ratio * eps, ratio * ratio * eps):
        above = np.flatnonzero(w[i:] > floor + level)
        if len(above) == 0:
            return float(t[i])
        crossings.append(_level_crossing(t, w, i + int(above[0]), floor + level))
    t1, t2, t3 = crossings
    # Near its start a smooth movement's speed grows as a power of time, s^p: then the
    # crossings of the three levels are spaced in the ratio q = ratio^(1/p), which gives
    # the time from the start to the first one.
    prior = ratio ** (1.0 / power)
    q = (t3 - t2) / (t2 - t1) if t2 > t1 else prior
    # The measured ratio is noisy: it is pulled half-way (in log) towards the prior.
    q = math.sqrt(min(ratio, max(1.1, q)) * prior)
    return max(t1 - MAX_EXTRAPOLATION_S, t1 - (t2 - t1) / (q - 1.0))


def _fit_takeoff(t: FloatArray, w: FloatArray, reached: int, *, power: float) -> float:
    """When a movement of noisy speed ``w`` took off: least squares on the samples.

    ``t``, ``w`` (n,): a run of samples (s, m/s), the movement in it positive; by sample
    ``reached`` the speed has reached :data:`FIT_FRACTION` of its peak. The speed is taken
    as 0 before the takeoff t0 and ``c·(t - t0)^power`` after it; t0 (on a
    :data:`FIT_STEP_S` grid up to :data:`FIT_WINDOW_S` before ``t[reached]``) and c >= 0
    are those that fit the samples up to ``reached`` best. A sample before t0 that runs the
    other way costs nothing: the run may begin where a movement the other way ends.
    """
    end = float(t[reached])
    lo = int(np.searchsorted(t, end - FIT_WINDOW_S))
    ts, ws = t[lo : reached + 1], w[lo : reached + 1]
    if len(ts) < 3:
        return float(t[0])
    t0s = end - FIT_STEP_S * np.arange(round(FIT_WINDOW_S / FIT_STEP_S), 0, -1)
    lag = ts[None, :] - t0s[:, None]  # (m, k): time since each candidate takeoff
    after = lag > 0
    x = np.where(after, np.maximum(lag, 0.0) ** power, 0.0)
    sxx = (x * x).sum(axis=1)
    c = np.maximum((x * ws).sum(axis=1), 0.0) / np.where(sxx > 0, sxx, 1.0)
    cost = np.where(after, (ws - c[:, None] * x) ** 2, np.maximum(ws, 0.0) ** 2).sum(axis=1)
    return float(t0s[int(np.argmin(cost))])


def _cumulative(t: FloatArray, v: FloatArray, z0: float, t0: float) -> FloatArray:
    """Height at samples t by trapezoids of v, starting from z0 at t0 (v = 0 there)."""
    tt = np.concatenate([[t0], t])
    vv = np.concatenate([[0.0], v])
    return z0 + np.cumsum(0.5 * (vv[1:] + vv[:-1]) * np.diff(tt))


def detect_reps(
    motion: VerticalMotion, exercise: str, *, load_kg: float | None = None
) -> list[Rep]:
    """Batch form of :class:`RepDetector` (the same answers, one call)."""
    detector = RepDetector(exercise, load_kg=load_kg)
    return detector.update(motion) + detector.flush()
