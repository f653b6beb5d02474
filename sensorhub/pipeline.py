"""One session's analysis, for the hub and for replay: batches and ticks in, records out.

The running hub (:mod:`sensorhub.service`) and a replay of a stored session
(:mod:`sensorhub.replay`) are the same analysis fed from two places, so they share
this one synchronous, I/O-free piece::

    sensor batches ─▶ SessionPipeline ─records─▶ the caller's sinks
    ticks (time)   ─┘   (one AthleteAnalyzer per athlete)

It owns what both used to do each in their own way: a sensor's role in the analysis
(:func:`analysis_role`), the tilt calibration stored at pairing
(:func:`stored_calibration`), the neutral window held when there is none
(:mod:`sensorhub.analysis.neutral`), one analyzer per athlete built from typed,
validated :class:`AnalysisSettings`, how often time is let pass (:data:`TICK_S`), a
neutral window the pelvis missed (asked again, at once), and events made into records
stamped with the session's wall clock, each athlete's state derived from them
(``athlete_state`` records). What it never does: read a radio or a file, publish,
store. The caller decides where each record goes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sensorhub.analysis.athlete import AthleteAnalyzer, Role
from sensorhub.analysis.exercises import EXERCISES
from sensorhub.analysis.neutral import NEUTRAL_DELAY_S, NEUTRAL_HOLD_S, neutral_window
from sensorhub.analysis.tilt import NeutralWindowError, TiltCalibration
from sensorhub.config import (
    LIVE_RATE_HZ_LIMITS,
    LOAD_KG_LIMITS,
    SET_GAP_S_LIMITS,
    VELOCITY_LOSS_ALERT_PCT_LIMITS,
)
from sensorhub.errors import ConfigError
from sensorhub.records import AthleteStates, Record, WallClock, event_record
from sensorhub.stream import SensorBatch

__all__ = [
    "NEUTRAL_DELAY_S",
    "NEUTRAL_HOLD_S",
    "TICK_S",
    "AnalysisSettings",
    "SessionPipeline",
    "analysis_role",
    "neutral_window",
    "stored_calibration",
]

log = logging.getLogger(__name__)

TICK_S: Final = 0.25
"""How often time is let pass in the analysis (a set ends on a quiet clock, too): the
hub every this many seconds of its clock, a replay every this many of the stream's."""


def analysis_role(kind: str, role: str) -> Role:
    """The analysis's name for a sensor: ``bar_velocity`` for a transducer, else its place."""
    if kind == "bar_velocity":
        return "bar_velocity"
    return "bar" if role == "bar" else "pelvis"


def stored_calibration(calibration: Mapping[str, Any] | None) -> TiltCalibration | None:
    """The tilt calibration pairing stored with a pelvis sensor; None if it stored none.

    Raises ValueError (naming what is wrong) for one that cannot be used.
    """
    gravity = (calibration or {}).get("neutral_gravity_sensor")
    if gravity is None:
        return None
    return TiltCalibration.from_gravity(gravity, (calibration or {}).get("tilt_axis_sensor"))


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    """What one athlete's analysis runs with; checked once, here.

    The hub builds them from its configuration, a replay from what the session stored
    (:meth:`from_stored`, :meth:`stored`): both run the analysis the same way.
    """

    exercise: str
    load_kg: float | None = None
    set_gap_s: float = 45.0
    velocity_loss_alert_pct: float = 20.0
    live_rate_hz: float = 10.0

    def __post_init__(self) -> None:
        if self.exercise not in EXERCISES:
            raise ConfigError(f"exercise {self.exercise!r}: not one of {', '.join(EXERCISES)}")
        if self.load_kg is not None:
            _check("load_kg", self.load_kg, LOAD_KG_LIMITS)
        _check("set_gap_s", self.set_gap_s, SET_GAP_S_LIMITS)
        _check(
            "velocity_loss_alert_pct", self.velocity_loss_alert_pct, VELOCITY_LOSS_ALERT_PCT_LIMITS
        )
        _check("live_rate_hz", self.live_rate_hz, LIVE_RATE_HZ_LIMITS)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], **more: Any) -> AnalysisSettings:
        """Settings as a session stored them (a missing or null value takes the default)."""
        given = {
            key: stored[key]
            for key in ("exercise", "load_kg", "set_gap_s", "velocity_loss_alert_pct")
            if stored.get(key) is not None
        }
        return cls(**given, **more)

    def stored(self) -> dict[str, Any]:
        """As a session stores them (``live_rate_hz`` is the hub's, not the session's)."""
        return {
            "exercise": self.exercise,
            "load_kg": self.load_kg,
            "set_gap_s": self.set_gap_s,
            "velocity_loss_alert_pct": self.velocity_loss_alert_pct,
        }


def _check(name: str, value: float, limits: tuple[float, float]) -> None:
    low, high = limits
    if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} = {value!r}: allowed {low:g} to {high:g}")


class SessionPipeline:
    """One session's analysis: an analyzer per athlete, fed batches, ticked, flushed.

    ``clock`` stamps the records with wall-clock times; ``session_id``, when given, goes
    into every record. Every method returns the records it completed, in order.
    """

    def __init__(self, clock: WallClock, *, session_id: int | None = None) -> None:
        self.clock = clock
        self.session_id = session_id
        self.analyzers: dict[str, AthleteAnalyzer] = {}
        self.states = AthleteStates()
        """Each athlete's state now, derived from their records (an ``athlete_state``
        record follows every record that changes it)."""
        self._next_tick = -math.inf

    def add_athlete(
        self,
        name: str,
        settings: AnalysisSettings,
        rates: Mapping[Role, float],
        *,
        calibration: TiltCalibration | None = None,
        neutral_from: float | None = None,
    ) -> list[Record]:
        """Start (or start again) ``name``'s analysis with these sensors' ``rates``.

        A pelvis without ``calibration`` measures neutral from ``neutral_from`` (s, on the
        samples' clock; see :func:`~sensorhub.analysis.neutral.neutral_window`). An
        analysis already running for the athlete is finished first: its records are
        returned.
        """
        finished = self.flush(name)
        window = None
        if "pelvis" in rates and calibration is None:
            if neutral_from is None:
                raise ValueError(f"{name}: a pelvis with no calibration needs neutral_from")
            window = neutral_window(neutral_from)
        self.analyzers[name] = AthleteAnalyzer(
            name,
            settings.exercise,
            dict(rates),
            load_kg=settings.load_kg,
            velocity_loss_alert_pct=settings.velocity_loss_alert_pct,
            set_gap_s=settings.set_gap_s,
            neutral_window=window,
            tilt_calibration=calibration,
            live_rate_hz=settings.live_rate_hz,
        )
        return finished

    def feed(self, name: str, role: Role, batch: SensorBatch) -> list[Record]:
        """One sensor batch of ``name``'s, in the analysis as ``role``.

        A pelvis that was away while its neutral was to be held is asked for it again,
        from this batch's last sample on (a warning says so).
        """
        analyzer = self.analyzers[name]
        try:
            if role == "bar_velocity":
                if batch.position is None or batch.velocity is None:
                    raise ValueError("a bar-velocity batch without position and velocity")
                events = analyzer.feed_transducer(batch.t, batch.position, batch.velocity)
            else:
                if batch.accel is None or batch.gyro is None:
                    raise ValueError("an IMU batch without accelerometer and gyroscope")
                events = analyzer.feed_imu(role, batch.t, batch.accel, batch.gyro)
        except NeutralWindowError:
            analyzer.recalibrate_tilt(neutral_window(float(batch.t[-1])))
            log.warning(
                "%s: no pelvis data while measuring the neutral pose; hold neutral for %g s now",
                name,
                NEUTRAL_HOLD_S,
            )
            return []
        return self._records(events)

    def tick_due(self, now: float) -> bool:
        """Whether time should pass in the analysis at ``now`` (every :data:`TICK_S`)."""
        return now >= self._next_tick

    def tick(self, name: str, now: float) -> list[Record]:
        """Let time pass in ``name``'s analysis (see :meth:`AthleteAnalyzer.tick`)."""
        return self._records(self.analyzers[name].tick(now))

    def tick_all(self, now: float) -> list[Record]:
        """Let time pass in every athlete's analysis, if it is due (:meth:`tick_due`)."""
        if not self.tick_due(now):
            return []
        self._next_tick = now + TICK_S
        records: list[Record] = []
        for name in self.analyzers:
            records += self.tick(name, now)
        return records

    def flush(self, name: str | None = None) -> list[Record]:
        """Finish ``name``'s analysis (everyone's when None) and drop it."""
        records: list[Record] = []
        for each in [name] if name is not None else list(self.analyzers):
            analyzer = self.analyzers.pop(each, None)
            if analyzer is not None:
                records += self._records(analyzer.flush())
        return records

    def _records(self, events: list[Any]) -> list[Record]:
        records: list[Record] = []
        for event in events:
            record = event_record(event, self.clock)
            if self.session_id is not None:
                record["session_id"] = self.session_id
            records.append(record)
            if (state := self.states.update(record)) is not None:
                records.append(state)
        return records
