"""The session store: every session's sensors, raw frames, reps, sets and alerts in SQLite.

One file, ``<state_dir>/sessions.db``, in WAL mode. The hub writes from its event loop:
each call only adds rows to an open transaction (microseconds), and the store's flush
task commits at least every 0.5 s, so a killed process loses at most the last half
second; the WAL is checkpointed from a worker thread, so the fsyncs of a checkpoint
never stall the loop. ``synchronous = NORMAL``: a commit survives the process dying;
only a power cut may lose the last commits, never the file.

SQLite starts the WAL over only when a transaction begins after a checkpoint has
copied all of it. Frames arrive every few milliseconds, so a checkpoint running beside
them never catches up and the WAL would keep every frame of the session (hundreds of
MB within minutes at 40 sensors). While a checkpoint runs, the frames that arrive are
held in memory instead (for :data:`CHECKPOINT_HOLD_S` at most) and written as it ends,
into a WAL started over.

A full disk loses nothing the hub was told is kept: the writes wait in bounded memory
and land in order once it takes them again (:mod:`sensorhub.store._writes`), while
:attr:`SessionStore.problem` says so.

One writer at a time holds ``sessions.db.lock``; readers (``sensorhub sessions``,
``export``, ``replay``) open the file read-only, also while the hub records. A session
whose ``ended`` is null was either being recorded (a writer holds the lock) or cut off
by a crash: then ``interrupted`` is true. Its data up to the crash stays readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import numpy as np
import numpy.typing as npt

from sensorhub.errors import ConfigError, StateError
from sensorhub.records import iso
from sensorhub.registry import RegisteredSensor
from sensorhub.state import create_private
from sensorhub.store._errors import state_error
from sensorhub.store._hold import DEFAULT_HOLD_BYTES, HeldWrite, Worth
from sensorhub.store._lock import WriterLock, writer_alive
from sensorhub.store._rows import (
    athlete_settings,
    check_load,
    from_sql,
    sql_name,
    statements,
    to_sql,
)
from sensorhub.store._writes import StoreWrites

if TYPE_CHECKING:
    from sensorhub.stream import SensorBatch

from sensorhub.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    RECORD_COLUMNS,
    RECORD_TABLES,
    SCHEMA_VERSION,
)

log = logging.getLogger(__name__)

FILE_NAME: Final = "sessions.db"
FLUSH_INTERVAL_S: Final = 0.25
"""Commit this often: at most twice this is lost when the process is killed."""
CHECKPOINT_INTERVAL_S: Final = 10.0
CHECKPOINT_HOLD_S: Final = 0.25
"""Longest that frames wait in memory for a checkpoint to end (then they are written)."""
WAL_SIZE_LIMIT_BYTES: Final = 16 * 1024 * 1024
"""The WAL file is cut back to this size when it starts over (``journal_size_limit``)."""
BUSY_TIMEOUT_MS: Final = 5000
RECORD_SIZE: Final = 1024
"""About what a held rep, set or alert takes in memory, in bytes."""


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One stored data frame: the bytes from the radio and its samples' hub times (s)."""

    address: str
    kind: str
    role: str
    athlete: str
    t: npt.NDArray[np.float64]
    frame: bytes
    lost_before: int


class SessionStore:
    """Sessions in one SQLite file; an async context manager that commits in the background."""

    def __init__(
        self, path: Path, *, readonly: bool = False, hold_bytes: int = DEFAULT_HOLD_BYTES
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock: WriterLock | None = None
        self._runner: asyncio.Task[None] | None = None
        self._athlete_ids: dict[str, int] = {}
        self._sensor_ids: dict[str, int] = {}
        self._session_sensor_ids: dict[tuple[int, str], int] = {}
        self._mine: set[int] = set()
        self.batches_without_frame = 0
        self._held: list[HeldWrite] | None = None  # frames waiting for a checkpoint
        self._held_since = 0.0
        self._closed = False
        self.cut_off: tuple[int, ...] = ()
        """Sessions this writer found cut off by a crash when it opened the store."""
        self._conn = self._open_readonly() if readonly else self._open_writer()
        self._writes = StoreWrites(
            self._conn, self.path, hold_bytes=hold_bytes, forget_ids=self._forget_ids
        )
        self._next_session_id = 0 if readonly else self._last_session_id() + 1
        """Ids are chosen here, so that a session can start while the disk refuses."""

    @staticmethod
    def path_in(state_dir: Path) -> Path:
        """Where a state directory keeps its sessions."""
        return Path(state_dir) / FILE_NAME

    @classmethod
    def open_readonly(cls, path: Path) -> SessionStore:
        """Open an existing store for reading; StateError if it is missing or not a store."""
        return cls(path, readonly=True)

    # Opening ----------------------------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise state_error(self.path, "create the state directory", exc) from exc
        # The lock comes first: a directory we cannot write gets a clear error before
        # SQLite leaves anything half-created in it.
        self._lock = WriterLock.acquire(self.path)
        try:
            try:
                create_private(self.path)
            except OSError as exc:
                raise state_error(self.path, "create the session store", exc) from exc
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StateError(f"{self.path} cannot use WAL mode (got {mode}); move it")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA foreign_keys = ON")
                self._migrate(conn)
                # Whoever held the lock before us is gone: its open sessions were cut off.
                self.cut_off = tuple(
                    int(row[0])
                    for row in conn.execute(
                        "SELECT id FROM sessions WHERE ended IS NULL AND NOT interrupted "
                        "ORDER BY id"
                    )
                )
                conn.execute("UPDATE sessions SET interrupted = 1 WHERE ended IS NULL")
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            self._lock.release()
            raise state_error(self.path, "open the session store", exc) from exc
        except BaseException:
            self._lock.release()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = self._check_identity(conn)
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                # executescript() would commit first: one statement at a time keeps a
                # migration all-or-nothing.
                for statement in statements(MIGRATIONS[step]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _check_identity(self, conn: sqlite3.Connection) -> int:
        """The schema version of the file; StateError if it is someone else's or too new."""
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if application_id == 0 and version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables == 0:
                return 0
        if application_id != APPLICATION_ID:
            raise StateError(
                f"{self.path} is an SQLite file but not a sensorhub session store; "
                "move it out of the state directory and sensorhub starts a new one"
            )
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} was written by a newer sensorhub (schema {version}; this one "
                f"reads up to {SCHEMA_VERSION}); upgrade sensorhub"
            )
        return version

    def _last_session_id(self) -> int:
        """The highest session id ever given (AUTOINCREMENT never gives one twice)."""
        row = self._execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sessions'), 0), "
            "coalesce((SELECT max(id) FROM sessions), 0))"
        ).fetchone()
        return int(row[0])

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StateError(
                f"no session store at {self.path}: nothing has been recorded there yet "
                "(check --state-dir)"
            )
        uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                version = self._check_identity(conn)
            except sqlite3.OperationalError:
                # WAL needs its -shm file; in a directory we may not write, and with no
                # writer alive to change it, the file can be read as immutable.
                conn.close()
                if writer_alive(self.path):
                    raise
                conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
                version = self._check_identity(conn)
        except sqlite3.Error as exc:
            raise state_error(self.path, "read the session store", exc) from exc
        if version == 0:
            # Nothing in it (e.g. zero bytes): no schema to upgrade, nothing recorded.
            conn.close()
            raise StateError(
                f"{self.path} is empty: not a sensorhub session store yet, and no session "
                "is recorded in it (a recording sensorhub, `sensorhub run`, makes it one)"
            )
        if version != SCHEMA_VERSION:
            conn.close()
            raise StateError(
                f"{self.path} has schema {version}; open it once with a recording sensorhub "
                "(`sensorhub run`) to upgrade it"
            )
        return conn

    # Life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if not self.readonly:
            # The checkpoint task does this work in a thread instead of inside a commit.
            self._execute("PRAGMA wal_autocheckpoint = 0")
            self._runner = asyncio.create_task(self._run(), name=f"session store {self.path}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self.close()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._flush_loop(), name="session store flush")
            tasks.create_task(self._checkpoint_loop(), name="session store checkpoint")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.commit()
            await self._writes.write_held()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            self.commit()
            if self._writes.refused is not None:
                continue  # the disk refuses: a checkpoint would fail, and nothing is new
            # Nothing of ours is in flight: held frames let the checkpoint copy the whole
            # WAL, so that the next transaction starts it over (module docstring).
            self._held, self._held_since = [], time.monotonic()
            try:
                await asyncio.to_thread(_checkpoint, self.path, "PASSIVE")
            except sqlite3.Error as exc:
                log.warning("checkpoint of %s failed (will retry): %s", self.path, exc)
            finally:
                self._release_held()

    def _release_held(self) -> None:
        """Write the frames held during a checkpoint (into the hold if the disk refuses)."""
        held, self._held = self._held, None
        if not held or self._closed:
            return
        for write in held:
            self._write(write)

    def commit(self) -> None:
        """Make everything added so far durable against the process dying.

        Never loses a write: if the disk refuses, the transaction's writes are held and
        made again once it takes them (:attr:`problem` says so meanwhile).
        """
        if not self.readonly:
            self._writes.commit()

    def close(self) -> None:
        """End this writer's open sessions, commit, and release the file."""
        if self._closed:
            return
        try:
            if not self.readonly:
                self._release_held()
                for session_id in sorted(self._mine):
                    self.end_session(session_id)
                self.commit()
                self._writes.write_held_before_closing()
                self._conn.execute("PRAGMA wal_autocheckpoint = 1000")
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._closed = True
            self._conn.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # Writing ----------------------------------------------------------------------------

    def _check_writable(self, doing: str) -> None:
        if self.readonly:
            raise StateError(f"cannot {doing}: {self.path} was opened read-only")
        if self._closed:
            raise StateError(f"cannot {doing}: the session store {self.path} is closed")

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise state_error(self.path, "read the session store", exc) from exc

    def start_session(
        self,
        *,
        athletes: dict[str, dict[str, Any]],
        sensors: list[RegisteredSensor],
        clock_offset_s: float,
        note: str = "",
    ) -> int:
        """Open a session and return its id; committed at once (or held, see the module).

        ``athletes`` maps each name to ``{"exercise": str, "load_kg": float | None}``,
        optionally with ``set_gap_s`` and ``velocity_loss_alert_pct`` (the analysis
        settings, so a replay uses the same). ``clock_offset_s`` is Unix minus monotonic
        time (``WallClock.offset_s``).
        """
        settings = {name: athlete_settings(name, value) for name, value in athletes.items()}
        if not math.isfinite(clock_offset_s):
            raise ConfigError(f"clock_offset_s must be a finite number, not {clock_offset_s!r}")
        session_id = self._next_session_id
        started = iso(time.time())
        sensors = list(sensors)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (id, started, clock_offset_s, note) VALUES (?, ?, ?, ?)",
                (session_id, started, float(clock_offset_s), note),
            )
            for name, (exercise, load_kg, gap_s, loss_pct) in settings.items():
                conn.execute(
                    "INSERT INTO session_athletes (session_id, athlete_id, exercise, load_kg, "
                    "set_gap_s, velocity_loss_alert_pct) VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, self._athlete_id(name), exercise, load_kg, gap_s, loss_pct),
                )
            for sensor in sensors:
                self._session_sensor_id(session_id, sensor)

        self._write(HeldWrite("session", session_id, run, Worth.SESSION, 512, "start a session"))
        self._next_session_id += 1
        self.commit()
        self._mine.add(session_id)
        return session_id

    def end_session(self, session_id: int) -> None:
        """Close a session and commit at once (ending it twice changes nothing)."""
        if session_id not in self._mine:
            self._session_row(session_id)  # raises for an unknown id
        ended = iso(time.time())

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE sessions SET ended = ? WHERE id = ? AND ended IS NULL", (ended, session_id)
            )

        self._write(HeldWrite("session", session_id, run, Worth.SESSION, 128, "end the session"))
        self.commit()
        self._mine.discard(session_id)

    def add_athlete(self, session_id: int, name: str, settings: dict[str, Any]) -> None:
        """Add an athlete who joins a running session (``settings`` as in start_session).

        Adding one who is already in it changes nothing.
        """
        exercise, load_kg, gap_s, loss_pct = athlete_settings(name, settings)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO session_athletes (session_id, athlete_id, exercise, "
                "load_kg, set_gap_s, velocity_loss_alert_pct) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, self._athlete_id(name), exercise, load_kg, gap_s, loss_pct),
            )

        doing = "add an athlete to the session"
        self._write(HeldWrite("session", session_id, run, Worth.SESSION, 256, doing))

    def set_load(self, session_id: int, athlete: str, load_kg: float | None) -> None:
        """Change the load on an athlete's bar (kg; None: unknown) from now on.

        Refused while the disk refuses writes: a command is answered now, and one that
        cannot be checked against the session's athletes is not taken.
        """
        check_load(athlete, load_kg)
        self._check_writable("set the load")
        if (refused := self._writes.refused) is not None:
            raise StateError(f"{refused}; the load is not changed")
        in_session = self._execute(
            "SELECT 1 FROM session_athletes WHERE session_id = ? AND "
            "athlete_id = (SELECT id FROM athletes WHERE name = ?)",
            (session_id, athlete),
        ).fetchone()
        if in_session is None:
            raise ConfigError(f"athlete {athlete!r} is not in session {session_id}")

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE session_athletes SET load_kg = ? WHERE session_id = ? AND "
                "athlete_id = (SELECT id FROM athletes WHERE name = ?)",
                (load_kg, session_id, athlete),
            )

        self._write(HeldWrite("session", session_id, run, Worth.SESSION, 128, "set the load"))

    def add_batch(self, session_id: int, sensor: RegisteredSensor, batch: SensorBatch) -> None:
        """Keep one data frame as it came off the radio, with its samples' hub times."""
        if not batch.frame or len(batch.t) == 0:
            self.batches_without_frame += 1  # nothing a replay could decode
            return
        t = np.ascontiguousarray(batch.t, dtype="<f8").tobytes()
        values = (float(batch.t[0]), batch.lost_before, t, bytes(batch.frame))

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT_FRAME, (self._session_sensor_id(session_id, sensor), *values))

        size = len(t) + len(values[3]) + 200
        write = HeldWrite("frame", session_id, run, Worth.FRAME, size, "record a frame")
        if self._held is not None:
            known = self._session_sensor_ids.get((session_id, sensor.address.upper()))
            if known is not None and time.monotonic() - self._held_since < CHECKPOINT_HOLD_S:
                self._held.append(write)
                return
            # A slow checkpoint or a new sensor: write, after the held frames to keep
            # their order (the WAL starts over at a later checkpoint).
            self._release_held()
        self._write(write)

    def add_record(self, session_id: int, record: dict[str, Any]) -> None:
        """Keep a rep, set or alert record (:mod:`sensorhub.records`); others are ignored."""
        kind = record.get("type")
        if kind not in RECORD_TABLES:
            return
        columns = RECORD_COLUMNS[kind]
        names = ", ".join(sql_name(column) for column in columns)
        marks = ", ".join("?" * (len(columns) + 1))
        kept = dict(record)  # as it is now: the caller may change its own afterwards

        def run(conn: sqlite3.Connection) -> None:
            values = [to_sql(column, kept, self._athlete_id) for column in columns]
            conn.execute(
                f"INSERT INTO {RECORD_TABLES[kind]} (session_id, {names}) VALUES ({marks})",  # noqa: S608 - names from the schema
                (session_id, *values),
            )

        whole = kind == "rep" and not kept.get("partial")
        doing = f"record a {kind}"
        self._write(HeldWrite(kind, session_id, run, Worth.RECORD, RECORD_SIZE, doing, whole))

    # Writes the disk refused ----------------------------------------------------------

    @property
    def problem(self) -> dict[str, Any] | None:
        """Why writes wait in memory now (the disk refuses them), for the hub status; None
        while the disk takes them. See :attr:`StoreWrites.problem` for the keys."""
        return self._writes.problem

    def counts(self, session_id: int) -> tuple[int, int]:
        """The session's sets and whole reps: those written and those held to be written."""
        sets, reps = self._execute(
            "SELECT (SELECT count(*) FROM sets WHERE session_id = ?1), "
            "(SELECT count(*) FROM reps WHERE session_id = ?1 AND NOT partial)",
            (session_id,),
        ).fetchone()
        for write in self._writes.held():
            if write.session_id == session_id:
                sets += write.what == "set"
                reps += write.whole_rep
        return int(sets), int(reps)

    def _write(self, write: HeldWrite) -> None:
        self._check_writable(write.doing)
        self._writes.write(write)

    def _forget_ids(self) -> None:
        """Rows made in a lost transaction are gone: look ids up afresh."""
        self._athlete_ids.clear()
        self._sensor_ids.clear()
        self._session_sensor_ids.clear()

    def _athlete_id(self, name: str) -> int:
        if (known := self._athlete_ids.get(name)) is not None:
            return known
        self._conn.execute("INSERT OR IGNORE INTO athletes (name) VALUES (?)", (name,))
        row = self._conn.execute("SELECT id FROM athletes WHERE name = ?", (name,)).fetchone()
        self._athlete_ids[name] = int(row[0])
        return self._athlete_ids[name]

    def _session_sensor_id(self, session_id: int, sensor: RegisteredSensor) -> int:
        address = sensor.address.upper()
        if (known := self._session_sensor_ids.get((session_id, address))) is not None:
            return known
        conn = self._conn
        if (sensor_id := self._sensor_ids.get(address)) is None:
            conn.execute(
                "INSERT OR IGNORE INTO sensors (address, kind) VALUES (?, ?)",
                (address, sensor.kind),
            )
            row = conn.execute("SELECT id FROM sensors WHERE address = ?", (address,)).fetchone()
            sensor_id = self._sensor_ids[address] = int(row[0])
        calibration = None if sensor.calibration is None else json.dumps(sensor.calibration)
        conn.execute(
            "INSERT OR IGNORE INTO session_sensors "
            "(session_id, sensor_id, role, athlete_id, name, calibration) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                session_id,
                sensor_id,
                sensor.role,
                self._athlete_id(sensor.athlete),
                sensor.name,
                calibration,
            ),
        )
        row = conn.execute(
            "SELECT id FROM session_sensors WHERE session_id = ? AND sensor_id = ?",
            (session_id, sensor_id),
        ).fetchone()
        self._session_sensor_ids[(session_id, address)] = int(row[0])
        return int(row[0])

    # Reading ----------------------------------------------------------------------------

    def _interrupted(self, ended: str | None, flagged: int) -> bool:
        if flagged:
            return True
        if ended is not None:
            return False
        return not (self._lock is not None or writer_alive(self.path))

    def _session_row(self, session_id: int) -> tuple[Any, ...]:
        row = self._execute(
            "SELECT id, started, ended, interrupted, clock_offset_s, note FROM sessions "
            "WHERE id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            raise StateError(f"no session {session_id}; `sensorhub sessions list` shows them")
        return tuple(row)

    def sessions(self) -> list[dict[str, Any]]:
        """Every session, oldest first, with its athletes and how many sets and reps.

        ``reps`` counts whole reps, as a set's ``rep_count`` and the session's own count
        do; ``partial_reps`` the partial ones besides.
        """
        athletes: dict[int, dict[str, str]] = {}
        for session_id, name, exercise in self._execute(
            "SELECT sa.session_id, a.name, sa.exercise FROM session_athletes sa "
            "JOIN athletes a ON a.id = sa.athlete_id ORDER BY sa.session_id, a.name"
        ):
            athletes.setdefault(session_id, {})[name] = exercise
        rows = self._execute(
            "SELECT s.id, s.started, s.ended, s.interrupted, s.note, "
            "(SELECT count(*) FROM sets WHERE session_id = s.id), "
            "(SELECT count(*) FROM reps WHERE session_id = s.id AND NOT partial), "
            "(SELECT count(*) FROM reps WHERE session_id = s.id AND partial), "
            "(SELECT count(*) FROM alerts WHERE session_id = s.id) "
            "FROM sessions s ORDER BY s.id"
        ).fetchall()
        return [
            {
                "id": session_id,
                "started": started,
                "ended": ended,
                "interrupted": self._interrupted(ended, flagged),
                "note": note,
                "athletes": list(athletes.get(session_id, {})),
                "exercises": athletes.get(session_id, {}),
                "sets": sets,
                "reps": reps,
                "partial_reps": partial_reps,
                "alerts": alerts,
            }
            for session_id, started, ended, flagged, note, sets, reps, partial_reps, alerts in rows
        ]

    def session(self, session_id: int) -> dict[str, Any]:
        """One session's details: times, clock offset, athletes' settings, sensors."""
        _, started, ended, flagged, offset, note = self._session_row(session_id)
        athletes = [
            {
                "athlete": name,
                "exercise": exercise,
                "load_kg": load_kg,
                "set_gap_s": gap_s,
                "velocity_loss_alert_pct": loss_pct,
            }
            for name, exercise, load_kg, gap_s, loss_pct in self._execute(
                "SELECT a.name, sa.exercise, sa.load_kg, sa.set_gap_s, "
                "sa.velocity_loss_alert_pct FROM session_athletes sa "
                "JOIN athletes a ON a.id = sa.athlete_id WHERE sa.session_id = ? ORDER BY a.name",
                (session_id,),
            )
        ]
        sensors = []
        last_t0: float | None = None
        for ss_id, address, kind, role, athlete, name, calibration in self._session_sensors(
            session_id
        ):
            frames, last = self._execute(
                "SELECT count(*), (SELECT t0 FROM frames WHERE session_sensor_id = ?1 "
                "ORDER BY id DESC LIMIT 1) FROM frames WHERE session_sensor_id = ?1",
                (ss_id,),
            ).fetchone()
            if last is not None:
                last_t0 = last if last_t0 is None else max(last_t0, last)
            sensors.append(
                {
                    "address": address,
                    "kind": kind,
                    "role": role,
                    "athlete": athlete,
                    "name": name,
                    "calibration": None if calibration is None else json.loads(calibration),
                    "frames": frames,
                }
            )
        counts = {
            table: self._execute(
                f"SELECT count(*) FROM {table} WHERE session_id = ?",  # noqa: S608 - fixed names
                (session_id,),
            ).fetchone()[0]
            for table in RECORD_TABLES.values()
        }
        # Whole reps, as everywhere else; the partial ones besides.
        counts["partial_reps"] = self._execute(
            "SELECT count(*) FROM reps WHERE session_id = ? AND partial", (session_id,)
        ).fetchone()[0]
        counts["reps"] -= counts["partial_reps"]
        return {
            "id": session_id,
            "started": started,
            "ended": ended,
            "interrupted": self._interrupted(ended, flagged),
            "last_data": None if last_t0 is None else iso(last_t0 + offset),
            "clock_offset_s": offset,
            "note": note,
            "athletes": athletes,
            "sensors": sensors,
            **counts,
        }

    def _session_sensors(self, session_id: int) -> list[tuple[Any, ...]]:
        return self._execute(
            "SELECT ss.id, s.address, s.kind, ss.role, a.name, ss.name, ss.calibration "
            "FROM session_sensors ss JOIN sensors s ON s.id = ss.sensor_id "
            "JOIN athletes a ON a.id = ss.athlete_id WHERE ss.session_id = ? ORDER BY ss.id",
            (session_id,),
        ).fetchall()

    def _records(self, kind: str, session_id: int) -> list[dict[str, Any]]:
        self._session_row(session_id)
        columns = RECORD_COLUMNS[kind]
        table = RECORD_TABLES[kind]
        names = ", ".join("a.name" if c.kind == "athlete" else f"r.{sql_name(c)}" for c in columns)
        rows = self._execute(
            f"SELECT {names} FROM {table} r JOIN athletes a ON a.id = r.athlete_id "  # noqa: S608 - names from the schema
            "WHERE r.session_id = ? ORDER BY r.id",
            (session_id,),
        )
        return [
            {"type": kind, **{c.name: from_sql(c, v) for c, v in zip(columns, row, strict=True)}}
            for row in rows
        ]

    def reps(self, session_id: int) -> list[dict[str, Any]]:
        """The session's rep records, as :func:`sensorhub.records.rep_record` made them."""
        return self._records("rep", session_id)

    def sets(self, session_id: int) -> list[dict[str, Any]]:
        """The session's set records."""
        return self._records("set", session_id)

    def alerts(self, session_id: int) -> list[dict[str, Any]]:
        """The session's alert records."""
        return self._records("alert", session_id)

    def raw_batches(self, session_id: int) -> Iterator[RawBatch]:
        """Every stored frame: each sensor's in arrival order, sensors merged by time."""
        self._session_row(session_id)
        streams = [
            self._sensor_frames(ss_id, address, kind, role, athlete)
            for ss_id, address, kind, role, athlete, _, _ in self._session_sensors(session_id)
        ]
        return heapq.merge(*streams, key=lambda batch: float(batch.t[0]))

    def _sensor_frames(
        self, ss_id: int, address: str, kind: str, role: str, athlete: str
    ) -> Iterator[RawBatch]:
        rows = self._execute(
            "SELECT t, frame, lost_before FROM frames WHERE session_sensor_id = ? ORDER BY id",
            (ss_id,),
        )
        for t, frame, lost_before in rows:
            yield RawBatch(
                address, kind, role, athlete, np.frombuffer(t, dtype="<f8"), frame, lost_before
            )


_INSERT_FRAME: Final = (
    "INSERT INTO frames (session_sensor_id, t0, lost_before, t, frame) VALUES (?, ?, ?, ?, ?)"
)


def _checkpoint(path: Path, mode: str) -> None:
    """Copy the WAL into the database file, from a connection of the calling thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA wal_checkpoint({mode})")
    finally:
        conn.close()


__all__ = ["FILE_NAME", "RawBatch", "SessionStore"]
