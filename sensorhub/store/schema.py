"""The session store's tables, and the columns of its records, decided in one place.

The rep, set and alert tables hold exactly the fields of :mod:`sensorhub.records`, by
the same names, so a query, an export column and an MQTT payload agree. The column
specs below drive the SQL, the reads and every export format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

ExportFormat = Literal["csv", "jsonl", "parquet"]
FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)
"""What ``sensorhub export --format`` writes (:mod:`sensorhub.store.export`)."""
SCHEMA_VERSION: Final = 1
"""``PRAGMA user_version`` of a store this code writes; raise it with a migration."""
APPLICATION_ID: Final = 0x53484231
"""``PRAGMA application_id`` ("SHB1"): tells a sensorhub store from any other SQLite file."""

ColumnKind = Literal["text", "real", "integer", "bool", "real_list", "athlete"]


@dataclass(frozen=True, slots=True)
class Column:
    """One field of a record: its name (as in the record) and what it holds."""

    name: str
    kind: ColumnKind

    @property
    def sql(self) -> str:
        """The column's definition in the table (athletes are a foreign key)."""
        if self.kind == "athlete":
            return "athlete_id INTEGER NOT NULL REFERENCES athletes(id)"
        sql_type = {
            "text": "TEXT",
            "real": "REAL",
            "integer": "INTEGER",
            "bool": "INTEGER",
            "real_list": "TEXT",  # a JSON array: SQLite has no array type
        }[self.kind]
        return f"{self.name} {sql_type}"


def _columns(spec: str) -> tuple[Column, ...]:
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(Column(name, kind))  # type: ignore[arg-type]
    return tuple(out)


REP_COLUMNS: Final = _columns(
    """ts:text athlete:athlete exercise:text set_index:integer rep_in_set:integer
    rep_index:integer source:text t_start:real t_end:real concentric_start:real
    concentric_end:real mcv_mps:real peak_velocity_mps:real mpv_mps:real rom_m:real
    concentric_s:real eccentric_s:real lockout_hold_s:real time_under_tension_s:real
    mean_power_w:real partial:bool tilt_bottom_deg:real tilt_lockout_deg:real
    tilt_range_deg:real tilt_verdict:text tilt_reason:text"""
)
"""Every field of :func:`sensorhub.records.rep_record` but ``type``, in its order."""
SET_COLUMNS: Final = _columns(
    """ts:text athlete:athlete exercise:text set_index:integer t_start:real t_end:real
    rep_count:integer partial_reps:integer best_mcv_mps:real mean_mcv_mps:real
    last_mcv_mps:real velocity_loss_pct:real rest_before_s:real rest_pauses:integer
    rest_pauses_s:real_list"""
)
"""Every field of :func:`sensorhub.records.set_record` but ``type``."""
ALERT_COLUMNS: Final = _columns(
    """ts:text t:real athlete:athlete kind:text message:text set_index:integer
    rep_in_set:integer"""
)
"""Every field of :func:`sensorhub.records.alert_record` but ``type``."""
RECORD_TABLES: Final = {"rep": "reps", "set": "sets", "alert": "alerts"}
RECORD_COLUMNS: Final = {"rep": REP_COLUMNS, "set": SET_COLUMNS, "alert": ALERT_COLUMNS}


def _record_table(table: str, columns: tuple[Column, ...]) -> str:
    body = ",\n    ".join(column.sql for column in columns)
    return f"""
CREATE TABLE {table} (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    {body}
);
CREATE INDEX {table}_by_session ON {table}(session_id, id);
"""


SCHEMA_V1: Final = (
    """
CREATE TABLE athletes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE sensors (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,
    ended TEXT,
    clock_offset_s REAL NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE session_athletes (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    athlete_id INTEGER NOT NULL REFERENCES athletes(id),
    exercise TEXT NOT NULL,
    load_kg REAL,
    set_gap_s REAL,
    velocity_loss_alert_pct REAL,
    PRIMARY KEY (session_id, athlete_id)
);
CREATE TABLE session_sensors (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    sensor_id INTEGER NOT NULL REFERENCES sensors(id),
    role TEXT NOT NULL,
    athlete_id INTEGER NOT NULL REFERENCES athletes(id),
    name TEXT NOT NULL DEFAULT '',
    calibration TEXT,
    UNIQUE (session_id, sensor_id)
);
CREATE TABLE frames (
    id INTEGER PRIMARY KEY,
    session_sensor_id INTEGER NOT NULL REFERENCES session_sensors(id),
    t0 REAL NOT NULL,
    lost_before INTEGER NOT NULL DEFAULT 0,
    t BLOB NOT NULL,
    frame BLOB NOT NULL
);
CREATE INDEX frames_by_sensor ON frames(session_sensor_id, id);
"""
    + _record_table("reps", REP_COLUMNS)
    + _record_table("sets", SET_COLUMNS)
    + _record_table("alerts", ALERT_COLUMNS)
)
"""Version 1. ``frames.t`` is the samples' hub times as little-endian float64; ``t0`` its
first value, for ordering; ``frames.id`` is arrival order."""

MIGRATIONS: Final[dict[int, str]] = {1: SCHEMA_V1}
"""SQL that takes a store from ``version - 1`` to ``version``."""
