"""Grouping reps into sets, with per-set velocity figures and a velocity-loss alert.

A set ends when no rep follows for ``set_gap_s`` seconds (measured from the end of one
rep to the start of the next). Streaming, the time given to :meth:`SetTracker.tick` is
the caller's to choose: the athlete analysis gives the time it has judged the stream up
to, since its reps come seconds after they end. Shorter breaks inside a set of at least
:data:`REST_PAUSE_MIN_S` are rest-pauses: the athlete stays in position and carries on.

The default gap, 45 s, comes from the ranges the virtual athlete is drawn from (and
that gym practice suggests): rest-pauses last 10–30 s, rests between sets 60–180 s, so
45 s leaves 15 s of margin on either side. Sessions with shorter rests between sets (the
shipped preset scenarios rest 18–25 s, with 10–12 s rest-pauses) need a shorter gap,
such as 15 s; a gap alone cannot tell a 25 s rest-pause from a 20 s rest.

Per set, over its full reps (partial reps are kept but not counted): rep count, best,
mean and last mean concentric velocity (MCV), and velocity loss
``(best - last) / best · 100`` -- the best full rep so far to the latest full rep, as in
the ground truth. The alert is raised once per set, when the rep whose completion takes
the loss to the threshold or beyond is added. Times are seconds, velocities m/s.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sensorhub.analysis.reps import Rep

__all__ = [
    "DEFAULT_SET_GAP_S",
    "REST_PAUSE_MIN_S",
    "SetSummary",
    "SetTracker",
    "VelocityLossAlert",
    "group_sets",
]

DEFAULT_SET_GAP_S: Final = 45.0
REST_PAUSE_MIN_S: Final = 5.0
"""A break between reps of a set this long or longer is a rest-pause (s). The longest
pause between ordinary reps is a deadlift's bar on the floor, about 2 s."""


@dataclass(frozen=True, slots=True)
class SetSummary:
    """One finished set. ``index`` is 1-based; MCVs are NaN when no rep was full."""

    index: int
    t_start: float
    t_end: float
    reps: tuple[Rep, ...]
    """All the set's reps, partial ones included."""
    rep_count: int
    """Full reps."""
    best_mcv_mps: float
    mean_mcv_mps: float
    last_mcv_mps: float
    velocity_loss_pct: float
    rest_before_s: float | None
    """From the previous set's end to this one's start (None for the first set)."""
    rest_pauses_s: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class VelocityLossAlert:
    """The velocity loss of a set reached the threshold with rep ``rep_index``."""

    set_index: int
    rep_index: int
    velocity_loss_pct: float
    threshold_pct: float
    t: float
    """When the rep that crossed the threshold ended, s."""


class SetTracker:
    """Streaming: reps in (in time order), finished sets and velocity-loss alerts out.

    :meth:`add` a rep as soon as it is known; :meth:`tick` while time passes without
    reps (a set closes ``set_gap_s`` after its last rep); :meth:`flush` at the end.
    :func:`group_sets` is the batch form with the same answers.
    """

    def __init__(
        self,
        *,
        set_gap_s: float = DEFAULT_SET_GAP_S,
        velocity_loss_alert_pct: float = 20.0,
    ) -> None:
        if not (math.isfinite(set_gap_s) and set_gap_s > REST_PAUSE_MIN_S):
            raise ValueError(
                f"set_gap_s = {set_gap_s!r}: must exceed the {REST_PAUSE_MIN_S:g} s that "
                "make a rest-pause (45 s suits 10-30 s rest-pauses and 1-3 min rests)"
            )
        if not (math.isfinite(velocity_loss_alert_pct) and 0 < velocity_loss_alert_pct < 100):
            raise ValueError(
                f"velocity_loss_alert_pct = {velocity_loss_alert_pct!r}: must be a "
                "percentage between 0 and 100 (20 is usual)"
            )
        self.set_gap_s = set_gap_s
        self.velocity_loss_alert_pct = velocity_loss_alert_pct
        self._reps: list[Rep] = []
        self._index = 0
        self._last_end: float | None = None
        self._alerted = False

    def add(self, rep: Rep) -> list[VelocityLossAlert | SetSummary]:
        """Take the next rep; returns the set it shows has ended, and/or an alert."""
        out: list[VelocityLossAlert | SetSummary] = []
        if self._reps and rep.t_start - self._reps[-1].t_end >= self.set_gap_s:
            out.append(self._close())
        self._reps.append(rep)
        if not self._alerted and not rep.partial:
            loss = _velocity_loss(self._reps)
            if loss >= self.velocity_loss_alert_pct:
                self._alerted = True
                out.append(
                    VelocityLossAlert(
                        self._index + 1, rep.index, loss, self.velocity_loss_alert_pct, rep.t_end
                    )
                )
        return out

    def tick(self, t: float) -> list[SetSummary]:
        """Time ``t`` (s) has come with no new rep: close the set once the gap is over."""
        if self._reps and t - self._reps[-1].t_end >= self.set_gap_s:
            return [self._close()]
        return []

    def flush(self) -> list[SetSummary]:
        """The session ends: close the set in progress, if any."""
        return [self._close()] if self._reps else []

    def _close(self) -> SetSummary:
        reps = tuple(self._reps)
        self._index += 1
        full = [r.mcv_mps for r in reps if not r.partial]
        pauses = tuple(
            b.t_start - a.t_end
            for a, b in itertools.pairwise(reps)
            if b.t_start - a.t_end >= REST_PAUSE_MIN_S
        )
        summary = SetSummary(
            index=self._index,
            t_start=reps[0].t_start,
            t_end=reps[-1].t_end,
            reps=reps,
            rep_count=len(full),
            best_mcv_mps=max(full) if full else math.nan,
            mean_mcv_mps=sum(full) / len(full) if full else math.nan,
            last_mcv_mps=full[-1] if full else math.nan,
            velocity_loss_pct=_velocity_loss(reps),
            rest_before_s=None if self._last_end is None else reps[0].t_start - self._last_end,
            rest_pauses_s=pauses,
        )
        self._last_end = reps[-1].t_end
        self._reps = []
        self._alerted = False
        return summary


def _velocity_loss(reps: Iterable[Rep]) -> float:
    """(best - last) / best · 100 over the full reps, %; 0 without two of them."""
    full = [r.mcv_mps for r in reps if not r.partial]
    if not full:
        return 0.0
    best = max(full)
    return (best - full[-1]) / best * 100.0 if best > 0 else 0.0


def group_sets(
    reps: Iterable[Rep],
    *,
    set_gap_s: float = DEFAULT_SET_GAP_S,
    velocity_loss_alert_pct: float = 20.0,
) -> list[SetSummary]:
    """Batch form of :class:`SetTracker`: the sets of a whole session's reps."""
    tracker = SetTracker(set_gap_s=set_gap_s, velocity_loss_alert_pct=velocity_loss_alert_pct)
    sets: list[SetSummary] = []
    for rep in reps:
        sets += [item for item in tracker.add(rep) if isinstance(item, SetSummary)]
    return sets + tracker.flush()
