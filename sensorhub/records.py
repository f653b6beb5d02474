"""Events as flat records: the one place their field names and units are decided.

The MQTT payloads, the session store and the exports all use these records, so a
dashboard, a database query and a CSV column agree on ``mcv_mps``. Every key carries its
unit (``_mps``, ``_m``, ``_s``, ``_deg``, ``_pct``, ``_w``, ``_kg``); times are Unix
seconds (``t_*``) and one ISO 8601 UTC ``ts`` per record, for people and for tools that
want a timestamp column.

Analysis events carry hub time (``time.monotonic()`` seconds); a :class:`WallClock`
turns those into Unix time. A session stores its clock's offset, so a replay gives the
same timestamps as the live run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sensorhub.analysis.events import (
    Alert,
    Event,
    RepCompleted,
    SetCompleted,
    TiltUpdate,
    VelocityUpdate,
)

if TYPE_CHECKING:
    from sensorhub.stream import SensorStatus

__all__ = [
    "AthleteStates",
    "Record",
    "WallClock",
    "alert_record",
    "event_record",
    "iso",
    "rep_record",
    "sensor_status_record",
    "set_record",
    "tilt_record",
    "velocity_record",
]

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WallClock:
    """Hub (monotonic) seconds to Unix seconds: ``unix = monotonic + offset_s``."""

    offset_s: float = field(default_factory=lambda: time.time() - time.monotonic())

    def unix(self, t: float) -> float:
        """Unix seconds of hub time ``t``, to the millisecond."""
        return round(t + self.offset_s, 3)


def iso(unix_s: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-24T05:01:02.123Z``."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _num(value: float | None, digits: int) -> float | None:
    """A JSON-safe number: NaN and infinities become None (JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def rep_record(event: RepCompleted, clock: WallClock) -> Record:
    """One rep with every metric; ``tilt_*`` are None without a pelvis sensor."""
    rep, tilt = event.rep, event.tilt
    t_end = clock.unix(rep.t_end)
    return {
        "type": "rep",
        "ts": iso(t_end),
        "athlete": event.athlete,
        "exercise": event.exercise,
        "set_index": event.set_index,
        "rep_in_set": event.rep_in_set,
        "rep_index": rep.index,
        "source": event.source,
        "t_start": clock.unix(rep.t_start),
        "t_end": t_end,
        "concentric_start": clock.unix(rep.concentric_start),
        "concentric_end": clock.unix(rep.concentric_end),
        "mcv_mps": _num(rep.mcv_mps, 4),
        "peak_velocity_mps": _num(rep.peak_velocity_mps, 4),
        "mpv_mps": _num(rep.mpv_mps, 4),
        "rom_m": _num(rep.rom_m, 4),
        "concentric_s": _num(rep.concentric_s, 3),
        "eccentric_s": _num(rep.eccentric_s, 3),
        "lockout_hold_s": _num(rep.lockout_hold_s, 3),
        "time_under_tension_s": _num(rep.time_under_tension_s, 3),
        "mean_power_w": _num(rep.mean_power_w, 1),
        "partial": rep.partial,
        "tilt_bottom_deg": _num(tilt.bottom_deg, 2) if tilt else None,
        "tilt_lockout_deg": _num(tilt.lockout_deg, 2) if tilt else None,
        "tilt_range_deg": _num(tilt.range_deg, 2) if tilt else None,
        "tilt_verdict": tilt.verdict if tilt else None,
        "tilt_reason": tilt.reason if tilt else None,
    }


def set_record(event: SetCompleted, clock: WallClock) -> Record:
    """One finished set; MCVs are None when the set had no full rep."""
    s = event.summary
    t_end = clock.unix(s.t_end)
    return {
        "type": "set",
        "ts": iso(t_end),
        "athlete": event.athlete,
        "exercise": event.exercise,
        "set_index": s.index,
        "t_start": clock.unix(s.t_start),
        "t_end": t_end,
        "rep_count": s.rep_count,
        "partial_reps": sum(1 for r in s.reps if r.partial),
        "best_mcv_mps": _num(s.best_mcv_mps, 4),
        "mean_mcv_mps": _num(s.mean_mcv_mps, 4),
        "last_mcv_mps": _num(s.last_mcv_mps, 4),
        "velocity_loss_pct": _num(s.velocity_loss_pct, 1),
        "rest_before_s": _num(s.rest_before_s, 1),
        "rest_pauses": len(s.rest_pauses_s),
        "rest_pauses_s": [round(p, 2) for p in s.rest_pauses_s],
    }


def alert_record(event: Alert, clock: WallClock) -> Record:
    """An alert for the athlete (velocity loss, a tilt cue)."""
    t = clock.unix(event.t)
    return {
        "type": "alert",
        "ts": iso(t),
        "t": t,
        "athlete": event.athlete,
        "kind": event.kind,
        "message": event.message,
        "set_index": event.set_index,
        "rep_in_set": event.rep_in_set,
    }


def tilt_record(event: TiltUpdate, clock: WallClock) -> Record:
    """The pelvic tilt now (positive: posterior of neutral)."""
    t = clock.unix(event.t)
    return {
        "type": "tilt",
        "ts": iso(t),
        "t": t,
        "athlete": event.athlete,
        "tilt_deg": event.tilt_deg,
    }


def velocity_record(event: VelocityUpdate, clock: WallClock) -> Record:
    """The bar's vertical velocity now (positive: up)."""
    t = clock.unix(event.t)
    return {
        "type": "velocity",
        "ts": iso(t),
        "t": t,
        "athlete": event.athlete,
        "velocity_mps": event.velocity_mps,
        "height_m": event.height_m,
        "source": event.source,
    }


def event_record(event: Event, clock: WallClock) -> Record:
    """Any analysis event as its record."""
    if isinstance(event, RepCompleted):
        return rep_record(event, clock)
    if isinstance(event, SetCompleted):
        return set_record(event, clock)
    if isinstance(event, Alert):
        return alert_record(event, clock)
    if isinstance(event, TiltUpdate):
        return tilt_record(event, clock)
    return velocity_record(event, clock)


def sensor_status_record(status: SensorStatus, now_unix: float | None = None) -> Record:
    """A sensor link's state and counters; ``online`` is true while it streams."""
    t = round(time.time() if now_unix is None else now_unix, 3)
    return {
        "type": "sensor_status",
        "ts": iso(t),
        "t": t,
        "address": status.address,
        "role": status.role,
        "athlete": status.athlete,
        "state": str(status.state),
        "online": str(status.state) == "streaming",
        "battery_pct": status.battery_pct,
        "rssi_dbm": status.rssi,
        "sample_rate_hz": _num(status.sample_rate_hz, 1),
        "frames_received": status.frames_received,
        "samples_received": status.samples_received,
        "frames_lost": status.frames_lost,
        "samples_lost": status.samples_lost,
        "frames_dropped_by_hub": status.frames_dropped_by_hub,
        "corrupt_frames": status.corrupt_frames,
        "reconnects": status.reconnects,
        "clock_drift_ppm": _num(status.clock_drift_ppm, 2),
        "last_error": status.last_error,
    }


class AthleteStates:
    """Each athlete's state now (schema ``athlete_state``), kept from their records.

    What a dashboard shows at a glance: the set and the rep in it, the last MCV, the
    set's velocity loss, the tilt now. Derived here, beside the records it comes from,
    so that the MQTT edge only publishes it (retained, one topic per athlete).
    """

    def __init__(self) -> None:
        self._states: dict[str, Record] = {}

    def update(self, record: Record) -> Record | None:
        """The athlete's new state after ``record`` (a copy), or None if it changes none.

        Tilt, rep and set records change it; others leave it as it is.
        """
        kind = record.get("type")
        athlete = record.get("athlete")
        if kind not in {"tilt", "rep", "set"} or not isinstance(athlete, str) or not athlete:
            return None
        state = self._states.setdefault(athlete, _empty_state(athlete))
        if kind == "tilt":
            state["tilt_deg"] = record.get("tilt_deg")
        elif kind == "rep":
            if "velocity_loss_pct" in record:
                state["velocity_loss_pct"] = record["velocity_loss_pct"]
            elif state["set_index"] != record.get("set_index"):
                state["velocity_loss_pct"] = None  # a new set: the last set's loss is not its
            state["set_index"] = record.get("set_index")
            state["reps_in_set"] = record.get("rep_in_set")
            state["last_mcv_mps"] = record.get("mcv_mps")
        else:
            state["set_index"] = record.get("set_index")
            state["reps_in_set"] = record.get("rep_count")
            state["last_mcv_mps"] = record.get("last_mcv_mps")
            state["velocity_loss_pct"] = record.get("velocity_loss_pct")
        for key in ("exercise", "session_id", "load_kg"):
            if record.get(key) is not None:
                state[key] = record[key]
        t = record.get("t") or record.get("t_end")
        state["t"] = t if isinstance(t, int | float) else round(time.time(), 3)
        state["ts"] = record.get("ts") or iso(state["t"])
        return dict(state)


def _empty_state(athlete: str) -> Record:
    return {
        "type": "athlete_state",
        "ts": None,
        "t": None,
        "athlete": athlete,
        "exercise": None,
        "session_id": None,
        "set_index": None,
        "reps_in_set": 0,
        "last_mcv_mps": None,
        "velocity_loss_pct": None,
        "tilt_deg": None,
        "load_kg": None,
    }
