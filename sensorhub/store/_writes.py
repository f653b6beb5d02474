"""The session store's writes through its one connection: none lost when the disk refuses.

Each write is a :class:`HeldWrite` that can be made again. It is remembered until its
transaction commits; when the disk refuses (full, past a file-size limit, failing), the
transaction is rolled back and its writes, and all that come after, wait in a bounded
:class:`WriteHold`. They are tried again every :data:`HOLD_RETRY_S`, oldest first, a
chunk per transaction, so they land in the order they were made. The refusal is logged
once when it begins and once when it is over, with what was held, written and let go;
:attr:`StoreWrites.problem` says it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from sensorhub.errors import StateError
from sensorhub.records import iso
from sensorhub.state import disk_refused
from sensorhub.store._errors import state_error
from sensorhub.store._hold import HeldWrite, WriteHold

__all__ = ["HOLD_RETRY_S", "StoreWrites"]

log = logging.getLogger("sensorhub.store.db")

HOLD_RETRY_S: Final = 1.0
"""While the disk refuses, the held writes are tried again this often."""
HOLD_CHUNK: Final = 500
"""Held writes committed at once when the disk takes them again; the loop runs between."""


class StoreWrites:
    """Writes into ``conn``'s transaction, held in memory while the disk refuses them.

    ``forget_ids`` is called whenever a transaction is lost: ids the store cached from
    rows made in it no longer exist.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        hold_bytes: int,
        forget_ids: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._path = path
        self._forget_ids = forget_ids
        self._pending: list[HeldWrite] = []  # in the open transaction
        self._hold: WriteHold[HeldWrite] = WriteHold(hold_bytes)
        self._refused: StateError | None = None  # why the hold is in use
        self._refused_since = (0.0, 0.0)  # (monotonic, Unix) time it began
        self._next_try = 0.0
        self._written: Counter[str] = Counter()  # held writes written since, by what

    @property
    def refused(self) -> StateError | None:
        """Why writes wait in memory now; None while the disk takes them."""
        return self._refused

    def held(self) -> Iterator[HeldWrite]:
        """The writes waiting for the disk, oldest first."""
        return iter(self._hold)

    @property
    def problem(self) -> dict[str, Any] | None:
        """The refusal for people and dashboards; None while the disk takes writes.

        ``message`` says what is wrong and what to do; ``since`` when it began (ISO 8601);
        ``held_events`` (reps, sets, alerts, session changes) and ``held_frames`` wait to
        be written; ``dropped_frames`` and ``dropped_events`` were let go to bound memory.
        """
        if self._refused is None:
            return None
        return {
            "message": str(self._refused),
            "since": iso(self._refused_since[1]),
            "held_events": self._hold.events,
            "held_frames": self._hold.frames,
            "dropped_events": self._hold.dropped_records,
            "dropped_frames": self._hold.dropped_frames,
        }

    # Writing ----------------------------------------------------------------------------

    def write(self, write: HeldWrite) -> None:
        """Make one write in the open transaction, or hold it behind those already held.

        Raises StateError only for a write that fails for its own sake (not the disk's).
        """
        if self._hold:
            self._keep(write)
            return
        try:
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN")
            write.run(self._conn)
        except sqlite3.Error as exc:
            error = state_error(self._path, write.doing, exc)
            if disk_refused(exc):
                self._lose_transaction(error)
                self._keep(write)
                return
            if not self._conn.in_transaction:  # SQLite ended the transaction itself
                self._lose_transaction(error)
            raise error from exc
        self._pending.append(write)

    def commit(self) -> None:
        """Commit the open transaction; if the disk refuses, its writes are held instead."""
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._lose_transaction(state_error(self._path, "save the session", exc))
            return
        self._pending.clear()

    def _lose_transaction(self, error: StateError) -> None:
        """The open transaction is lost: its writes are held, to be made again in order."""
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self._forget_ids()
        lost, self._pending = self._pending, []
        if self._refused is None:
            self._refused = error
            self._refused_since = (time.monotonic(), time.time())
            self._next_try = time.monotonic() + HOLD_RETRY_S
            log.error(
                "%s; until then what arrives is held in memory (up to %d MiB, the oldest raw "
                "frames let go first) and written once it fits",
                error,
                self._hold.max_bytes // (1024 * 1024),
            )
        for write in lost:
            self._keep(write)

    def _keep(self, write: HeldWrite) -> None:
        """Hold a write; say once when the bound first makes frames, then events, go."""
        frames, records = self._hold.dropped_frames, self._hold.dropped_records
        self._hold.put(write, worth=write.worth, size=write.size)
        if self._hold.dropped_frames and not frames:
            log.warning(
                "session store: the memory for held writes is full; the oldest raw frames "
                "are let go (reps, sets and alerts are kept)"
            )
        if self._hold.dropped_records and not records:
            log.error(
                "session store: the memory for held writes is full of events; the oldest "
                "reps, sets and alerts are let go"
            )

    # Writing what was held --------------------------------------------------------------

    async def write_held(self) -> None:
        """Write the held writes, oldest first, a chunk at a time; stop at a refusal."""
        if not self._hold or time.monotonic() < self._next_try:
            return
        while self._hold:
            if not self._write_chunk():
                self._next_try = time.monotonic() + HOLD_RETRY_S
                return
            await asyncio.sleep(0)  # what arrives meanwhile is held behind, in order
        self._end_refusal()

    def write_held_before_closing(self) -> None:
        """The last chance for held writes; what the disk still refuses is told as lost."""
        while self._hold and self._write_chunk():
            pass
        if self._hold:
            lost = tally(Counter(write.what for write in self._hold))
            log.error("%s: the disk still refuses writes; lost at shutdown: %s", self._path, lost)
        elif self._refused is not None:
            self._end_refusal()

    def _write_chunk(self) -> bool:
        """Commit the oldest held writes in one transaction; False if the disk refuses."""
        chunk = self._hold.oldest(HOLD_CHUNK)
        try:
            self._conn.execute("BEGIN")
            for write in chunk:
                self._make_again(write)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            self._forget_ids()
            log.debug("%s: the disk still refuses writes (%s)", self._path, exc)
            return False
        self._hold.forget(len(chunk))
        self._written.update(write.what for write in chunk)
        return True

    def _make_again(self, write: HeldWrite) -> None:
        """Make one held write; one that fails for its own sake is let go, not retried."""
        try:
            write.run(self._conn)
        except sqlite3.Error as exc:
            if disk_refused(exc) or not self._conn.in_transaction:
                raise
            log.error("a held write is let go: %s", state_error(self._path, write.doing, exc))

    def _end_refusal(self) -> None:
        """Everything held is written: one line says what was held, written and let go."""
        held_s = time.monotonic() - self._refused_since[0]
        dropped = []
        if self._hold.dropped_frames:
            dropped.append(f"{self._hold.dropped_frames} raw frames")
        if self._hold.dropped_records:
            dropped.append(f"{self._hold.dropped_records} reps, sets and alerts")
        log.warning(
            "%s takes writes again after %.1f s; held in memory meanwhile and now written: "
            "%s; let go to bound memory: %s",
            self._path,
            held_s,
            tally(self._written),
            ", ".join(dropped) or "nothing",
        )
        self._refused = None
        self._written.clear()
        self._hold.reset_counts()


def tally(counts: Counter[str]) -> str:
    """``2 sets, 6 reps, 812 raw frames``: held writes by what they are."""
    names = {"frame": "raw frames", "session": "session changes"}
    parts = [f"{n} {names.get(what, what + 's')}" for what, n in sorted(counts.items()) if n]
    return ", ".join(parts) or "nothing"
