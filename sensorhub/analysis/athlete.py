"""One athlete's streaming analysis: sensor batches in, events out.

Reps come from the best source the athlete wears: a bar-velocity sensor, else the bar
IMU, else the pelvis IMU (bodyweight hip thrust). The pelvis IMU gives the tilt. A rep
is told the moment its movement has ended, once the pelvis samples up to that moment
are in (sensors deliver in batches, a few tens of milliseconds apart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.events import (
    Alert,
    Event,
    RepCompleted,
    RepSource,
    SetCompleted,
    TiltUpdate,
    VelocityUpdate,
)
from sensorhub.analysis.reps import Rep, RepDetector
from sensorhub.analysis.sets import (
    DEFAULT_SET_GAP_S,
    SetSummary,
    SetTracker,
    VelocityLossAlert,
)
from sensorhub.analysis.tilt import TiltCalibration, TiltEstimator, rep_tilt
from sensorhub.analysis.velocity import VerticalVelocityEstimator, transducer_motion

FloatArray = npt.NDArray[np.float64]
Role = Literal["bar", "pelvis", "bar_velocity"]
LIVE_RATE_HZ: Final = 10.0
"""Default rate of the live streams (tilt, velocity): dashboards, not per sample."""
PENDING_REP_TIMEOUT_S: Final = 1.0
"""A rep waits at most this long (stream time) for the pelvis samples that cover it."""
TILT_HISTORY_S: Final = 120.0
"""Tilt kept for the reps still to be measured: far more than any rep lasts."""


class _Trace:
    """The latest samples of a trace, times and values, each in one contiguous array.

    With a ``keep_s`` the memory is fixed from the start: samples older than ``keep_s``
    before the newest are dropped when the arrays fill (then the kept ones move to the
    front, which costs a copy every ``keep_s / 4`` of samples). Without one, everything
    is kept and the arrays grow.
    """

    _HEADROOM: Final = 0.25

    def __init__(self, rate_hz: float, keep_s: float | None) -> None:
        self._keep_s = keep_s
        span_s = keep_s if keep_s is not None else 60.0
        capacity = math.ceil(span_s * rate_hz * (1.0 + self._HEADROOM)) + 1
        # Filled now, not page by page as samples come: the process's memory stays flat.
        self._t = np.full(capacity, np.nan)
        self._y = np.full(capacity, np.nan)
        self._n = 0

    def append(self, t: FloatArray, y: FloatArray) -> None:
        """Add samples after the ones held (``t`` increasing)."""
        n = len(t)
        if self._n + n > len(self._t):
            self._make_room(n, float(t[-1]))
        self._t[self._n : self._n + n] = t
        self._y[self._n : self._n + n] = y
        self._n += n

    def _make_room(self, n: int, newest: float) -> None:
        start = 0
        if self._keep_s is not None:
            start = int(np.searchsorted(self._t[: self._n], newest - self._keep_s))
        kept = self._n - start
        old_t, old_y = self._t[start : self._n], self._y[start : self._n]
        if kept + n > len(self._t):  # nothing old enough to drop (or a huge batch): grow
            size = max(2 * len(self._t), kept + n)
            self._t, self._y = np.full(size, np.nan), np.full(size, np.nan)
        # To the front (numpy copies overlapping slices safely).
        self._t[:kept] = old_t
        self._y[:kept] = old_y
        self._n = kept

    def view(self) -> tuple[FloatArray, FloatArray]:
        """Times and values held (read-only views)."""
        t, y = self._t[: self._n], self._y[: self._n]
        t.flags.writeable = y.flags.writeable = False
        return t, y

    def around(self, t_start: float, t_end: float) -> tuple[FloatArray, FloatArray]:
        """The samples over [``t_start``, ``t_end``] with one more on each side, if held."""
        t, y = self.view()
        lo = max(0, int(np.searchsorted(t, t_start, side="right")) - 1)
        hi = int(np.searchsorted(t, t_end, side="left")) + 1
        return t[lo:hi], y[lo:hi]


@dataclass
class AthleteAnalyzer:
    """Streaming analysis of one athlete's sensors; feed batches in time order per sensor."""

    athlete: str
    exercise: str
    rates: dict[Role, float]
    load_kg: float | None = None
    velocity_loss_alert_pct: float = 20.0
    set_gap_s: float = DEFAULT_SET_GAP_S
    """No rep for this long (s) ends a set; shorter breaks are rest-pauses."""
    neutral_window: tuple[float, float] | None = None
    tilt_calibration: TiltCalibration | None = None
    keep_tilt_trace: bool = False
    """Keep the whole tilt trace (evaluation); otherwise only the last two minutes."""
    live_rate_hz: float = LIVE_RATE_HZ
    """At most this many tilt and velocity updates per second (each)."""

    reps: list[Rep] = field(default_factory=list, init=False)
    sets: list[SetSummary] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not self.rates:
            raise ValueError("an athlete needs at least one sensor")
        if not (0 < self.live_rate_hz <= 1000):
            raise ValueError(f"live_rate_hz must be in (0, 1000], not {self.live_rate_hz}")
        self._live_period = 1.0 / self.live_rate_hz
        self._last_velocity_update = -np.inf
        self.rep_source: RepSource
        if "bar_velocity" in self.rates:
            self.rep_source = "bar_velocity"
        elif "bar" in self.rates:
            self.rep_source = "bar_imu"
        else:
            self.rep_source = "pelvis_imu"
        lift_role: Role = {
            "bar_velocity": "bar_velocity",
            "bar_imu": "bar",
            "pelvis_imu": "pelvis",
        }[self.rep_source]  # type: ignore[assignment]
        self._lift_role = lift_role
        self._velocity = (
            VerticalVelocityEstimator(self.rates[lift_role])
            if lift_role != "bar_velocity"
            else None
        )
        self._detector = RepDetector(self.exercise, load_kg=self.load_kg, set_gap_s=self.set_gap_s)
        self._sets = SetTracker(
            set_gap_s=self.set_gap_s, velocity_loss_alert_pct=self.velocity_loss_alert_pct
        )
        self._tilt = (
            TiltEstimator(
                self.rates["pelvis"],
                neutral_window=self.neutral_window,
                calibration=self.tilt_calibration,
            )
            if "pelvis" in self.rates
            else None
        )
        self._tilt_trace = _Trace(
            self.rates.get("pelvis", 1.0), None if self.keep_tilt_trace else TILT_HISTORY_S
        )
        self._tilt_until = -np.inf
        self._last_tilt_update = -np.inf
        self._pending: list[Rep] = []
        self._now = -np.inf
        self._lift_until = -np.inf  # the lifted body's newest sample, s
        self._set_index = 1
        self._rep_in_set = 0

    # Settings between sets ------------------------------------------------------------

    def set_load(self, load_kg: float | None) -> None:
        """The load on the bar from the next rep on (kg; None: unknown, no power)."""
        if load_kg is not None and not (np.isfinite(load_kg) and load_kg >= 0):
            raise ValueError(f"load_kg = {load_kg!r}: must be a non-negative number of kg")
        self.load_kg = load_kg
        self._detector.load_kg = load_kg

    def recalibrate_tilt(self, neutral_window: tuple[float, float]) -> None:
        """Measure the neutral pelvis again over ``neutral_window`` (s, on the samples' clock).

        The learned axis is kept; the tilt is unknown (NaN) until the window has passed.
        """
        if "pelvis" not in self.rates:
            raise ValueError(
                f"{self.athlete} wears no pelvis sensor: there is no tilt to calibrate"
            )
        self.neutral_window = neutral_window
        known = self._tilt.calibration if self._tilt is not None else None
        self._tilt = TiltEstimator(
            self.rates["pelvis"], neutral_window=neutral_window, calibration=known
        )

    @property
    def learned_tilt_axis(self) -> FloatArray | None:
        """The pelvis's mediolateral axis (3,), sensor frame, learned in this analysis.

        None before it is learned and when it came with ``tilt_calibration``. Stored with
        the calibration, it gives a later analysis tilt from its start (from the pelvis's
        first still pose) instead of after the first swings.
        """
        return self._tilt.learned_axis if self._tilt is not None else None

    # Input ------------------------------------------------------------------------------

    def feed_imu(
        self, role: Role, t: FloatArray, accel: FloatArray, gyro: FloatArray
    ) -> list[Event]:
        """Take a batch from the bar or pelvis IMU; return the events it completes."""
        events: list[Event] = []
        if len(t) == 0:
            return events
        self._now = max(self._now, float(t[-1]))
        if role == "pelvis" and self._tilt is not None:
            events += self._on_tilt(t, self._tilt.update(t, accel, gyro))
        if role == self._lift_role and self._velocity is not None:
            self._lift_until = float(t[-1])
            motion = self._velocity.update(t, accel, gyro)
            events += self._on_reps(self._detector.update(motion))
            if (live := self._velocity.live()) is not None:
                events += self._on_velocity(*live)
        events += self._release_pending()
        return events

    def feed_transducer(
        self, t: FloatArray, position: FloatArray, velocity: FloatArray
    ) -> list[Event]:
        """Take a batch from the bar-velocity sensor."""
        if len(t) == 0 or self._lift_role != "bar_velocity":
            return []
        self._now = max(self._now, float(t[-1]))
        self._lift_until = float(t[-1])
        motion = transducer_motion(t, position, velocity)
        events = self._on_reps(self._detector.update(motion))
        events += self._on_velocity(
            float(motion.t[-1]), float(motion.velocity[-1]), float(motion.position[-1])
        )
        return events + self._release_pending()

    def tick(self, now: float) -> list[Event]:
        """Let time pass without data: a set ends once the rest after it is long enough.

        Long enough in what the analysis has judged, not only by the clock: a rep is known
        seconds after it ends, and a set closed by the clock alone would shut out the rep
        in flight (see :meth:`_judged_until`).
        """
        self._now = max(self._now, now)
        events: list[Event] = list(self._release_pending())
        for summary in self._sets.tick(self._judged_until(now)):
            events += self._set_done(summary)
        return events

    def _judged_until(self, now: float) -> float:
        """The time (s) before which no rep is still to come.

        While the lifted body's stream flows, that is where the detector's undecided
        phases start (or a rep waits for its tilt), and never more than the longest
        rep before the newest sample: a movement that never turns round is no rep in
        flight. Once the stream has stopped for a whole set gap, it is ``now``.
        """
        if now - self._lift_until >= self.set_gap_s:
            return now
        waiting = [now]
        if self._pending:
            waiting.append(self._pending[0].t_start)
        undecided = self._detector.undecided_from()
        if undecided is not None:
            waiting.append(max(undecided, self._lift_until - self._detector.limits.max_rep_s))
        return min(waiting)

    def flush(self) -> list[Event]:
        """The session ends: finish what is in flight."""
        events: list[Event] = []
        if self._velocity is not None:
            events += self._on_reps(self._detector.update(self._velocity.flush()))
        events += self._on_reps(self._detector.flush())
        events += self._release_pending(force=True)
        for summary in self._sets.flush():
            events += self._set_done(summary)
        return events

    # Tilt -------------------------------------------------------------------------------

    def _on_tilt(self, t: FloatArray, tilt: FloatArray) -> list[Event]:
        self._tilt_trace.append(t, tilt)
        self._tilt_until = float(t[-1])
        known = np.flatnonzero(np.isfinite(tilt))
        if len(known) and t[known[-1]] - self._last_tilt_update >= self._live_period:
            self._last_tilt_update = float(t[known[-1]])
            return [TiltUpdate(self.athlete, float(t[known[-1]]), round(float(tilt[known[-1]]), 2))]
        return []

    def _on_velocity(self, t: float, velocity: float, height: float) -> list[Event]:
        if t - self._last_velocity_update < self._live_period:
            return []
        self._last_velocity_update = t
        return [
            VelocityUpdate(self.athlete, t, round(velocity, 3), round(height, 3), self.rep_source)
        ]

    def tilt_trace(self) -> tuple[FloatArray, FloatArray]:
        """The tilt kept so far: times (s) and degrees (NaN where not yet known)."""
        t, deg = self._tilt_trace.view()
        return t.copy(), deg.copy()

    # Reps and sets ----------------------------------------------------------------------

    def _on_reps(self, reps: list[Rep]) -> list[Event]:
        self._pending.extend(reps)
        return []

    def _release_pending(self, *, force: bool = False) -> list[Event]:
        events: list[Event] = []
        while self._pending:
            rep = self._pending[0]
            covered = self._tilt is None or self._tilt_until >= rep.t_end
            waited = self._now - rep.t_end >= PENDING_REP_TIMEOUT_S
            if not (covered or waited or force):
                break
            self._pending.pop(0)
            events += self._rep_done(rep)
        return events

    def _rep_done(self, rep: Rep) -> list[Event]:
        events: list[Event] = []
        items = self._sets.add(rep)
        for item in items:
            if isinstance(item, SetSummary):
                events += self._set_done(item)
        self.reps.append(rep)
        self._rep_in_set += 1
        tilt = None
        if self._tilt is not None:
            # Only the rep's own samples: the same answer as on the whole trace.
            t, deg = self._tilt_trace.around(rep.t_start, rep.t_end)
            tilt = rep_tilt(
                t,
                deg,
                t_start=rep.t_start,
                t_end=rep.t_end,
                concentric_start=rep.concentric_start,
                lockout_start=rep.lockout_start,
                lockout_end=rep.lockout_end,
                partial=rep.partial,
            )
        events.append(
            RepCompleted(
                self.athlete,
                self.exercise,
                self._set_index,
                self._rep_in_set,
                rep,
                tilt,
                self.rep_source,
            )
        )
        if tilt is not None and tilt.verdict in {"anterior_tilt", "large_range"} and tilt.reason:
            kind: Literal["anterior_tilt", "large_tilt_range"] = (
                "anterior_tilt" if tilt.verdict == "anterior_tilt" else "large_tilt_range"
            )
            events.append(
                Alert(self.athlete, rep.t_end, kind, tilt.reason, self._set_index, self._rep_in_set)
            )
        for item in items:
            if isinstance(item, VelocityLossAlert):
                message = (
                    f"velocity loss {item.velocity_loss_pct:.0f} % "
                    f"(threshold {item.threshold_pct:.0f} %)"
                )
                events.append(
                    Alert(
                        self.athlete,
                        item.t,
                        "velocity_loss",
                        message,
                        self._set_index,
                        self._rep_in_set,
                    )
                )
        return events

    def _set_done(self, summary: SetSummary) -> list[Event]:
        self.sets.append(summary)
        self._set_index += 1
        self._rep_in_set = 0
        return [SetCompleted(self.athlete, self.exercise, summary)]
