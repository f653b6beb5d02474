"""A durable FIFO of QoS 1 messages on disk, so nothing of value is lost while the broker is away.

Every message gets a sequence number that only ever grows, across restarts too, and the
number is written into its JSON payload (``"seq": n``). The publisher sends in sequence
order and acknowledges (deletes) a message only after the broker's PUBACK, so a message
may arrive twice after a reconnect but never goes missing: subscribers drop any ``seq``
they have already seen on that topic.

SQLite in WAL mode, one table; ``synchronous=NORMAL`` keeps a put to a few tens of
microseconds, and a power cut loses at most the last moments, never the file.

When the disk refuses writes (full, past a file-size limit, failing), messages are kept
in memory instead, up to :data:`DEFAULT_MAX_IN_MEMORY` (past it the oldest is let go, and
counted), with their ``seq`` as on disk: they are published all the same (the broker may
well be up), and whatever is still unsent goes to disk, in order, once it has space
(:meth:`Outbox.retry`). An acknowledgement the disk refuses to record is kept in memory
too: those messages are not sent again while the hub runs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from sensorhub.errors import StateError
from sensorhub.state import create_private, disk_refused

__all__ = ["Outbox", "OutboxFullError", "OutboxMessage"]

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 1_000_000
"""About 1 GB of reps and sets: weeks of training with the broker away."""
DEFAULT_MAX_IN_MEMORY: Final = 10_000
"""Messages kept in memory while the disk refuses (about 7 MB): hours of training."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
)
"""


class OutboxFullError(StateError):
    """The outbox holds its maximum; the message was refused (and counted), not dropped."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored message, as it will be published."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """The on-disk queue; a context manager that closes the database.

    Not thread-safe: one event loop owns it. ``refused`` counts messages turned away
    because the outbox was full; ``problem`` says why messages wait in memory (None
    while the disk takes them), ``dropped`` how many were let go from there.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_in_memory: int = DEFAULT_MAX_IN_MEMORY,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        if max_in_memory < 1:
            raise ValueError(f"max_in_memory must be at least 1, not {max_in_memory}")
        self.path = path
        self.max_messages = max_messages
        self.max_in_memory = max_in_memory
        self.refused = 0
        self.dropped = 0
        self.problem: str | None = None
        self._memory: deque[OutboxMessage] = deque()  # what the disk refused, in seq order
        self._acked = 0  # every seq up to this is delivered, whether deleted on disk or not
        try:
            create_private(path)
            # isolation_level=None: transactions are begun explicitly, where they matter.
            self._db = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(
                f"cannot open the MQTT outbox {str(path)!r}: {exc}; make sure the state "
                "directory exists and is writable"
            ) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            (self._count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            self._last_seq = int((row.fetchone() or (0,))[0])
        except sqlite3.Error as exc:
            self._db.close()
            raise StateError(
                f"cannot use the MQTT outbox {str(path)!r}: {exc}; make sure it is writable, "
                "or move it aside (undelivered messages in it are then lost)"
            ) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database; stored messages stay for the next run."""
        self.retry()
        if self._memory:
            log.error(
                "MQTT outbox %s: the disk still refuses writes; %d undelivered messages kept "
                "in memory are lost",
                self.path,
                len(self._memory),
            )
        self._db.close()

    def __len__(self) -> int:
        return int(self._count) + len(self._memory)

    @property
    def in_memory(self) -> int:
        """Messages waiting in memory because the disk refused them."""
        return len(self._memory)

    def put(
        self, topic: str, payload: Mapping[str, Any], *, qos: int = 1, retain: bool = False
    ) -> int:
        """Store a JSON object for ``topic`` and return its ``seq`` (also put in the payload).

        Raises :class:`OutboxFullError` when full, :class:`StateError` when the disk fails,
        and ``ValueError`` for a payload JSON cannot carry (NaN, non-string keys).
        """
        if len(self) >= self.max_messages:
            self.refused += 1
            raise OutboxFullError(
                f"MQTT outbox {str(self.path)!r} is full ({self.max_messages} messages "
                f"waiting for the broker); {self.refused} refused so far. Bring the broker "
                "back, or raise max_messages"
            )
        seq = self._last_seq + 1
        try:
            body = json.dumps(
                {**payload, "seq": seq}, separators=(",", ":"), allow_nan=False
            ).encode()
        except TypeError as exc:
            raise ValueError(f"payload for {topic} is not JSON: {exc}") from None
        message = OutboxMessage(seq, topic, body, qos, retain)
        if not self.retry():  # behind what waits in memory, to keep the order
            self._hold(message)
            return seq
        try:
            self._insert([message])
        except sqlite3.Error as exc:
            self._refuse(exc, "write to")
            self._hold(message)
            return seq
        self._last_seq = seq
        self._count += 1
        return seq

    def _insert(self, messages: list[OutboxMessage]) -> None:
        """Write messages with their seq in one transaction (none of them if it fails)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO outbox (seq, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                [(m.seq, m.topic, m.payload, m.qos, int(m.retain)) for m in messages],
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _hold(self, message: OutboxMessage) -> None:
        """Keep a message the disk refused in memory; past the bound the oldest goes."""
        self._last_seq = message.seq
        self._memory.append(message)
        if len(self._memory) > self.max_in_memory:
            self._memory.popleft()
            self.dropped += 1
            if self.dropped in {1, 10, 100} or self.dropped % 1000 == 0:
                log.error(
                    "MQTT outbox %s: %d messages wait in memory for the disk; the oldest are "
                    "let go (%d so far)",
                    self.path,
                    self.max_in_memory,
                    self.dropped,
                )

    def _refuse(self, exc: sqlite3.Error, doing: str) -> None:
        """Note a disk that refuses (said once); any other failure is raised as it is."""
        if not disk_refused(exc):
            raise StateError(f"cannot {doing} the MQTT outbox {str(self.path)!r}: {exc}") from None
        if self.problem is None:
            self.problem = (
                f"cannot write to the MQTT outbox {str(self.path)!r} ({exc}): the disk may be "
                "full; messages wait in memory and are still published"
            )
            log.error("%s", self.problem)

    def retry(self) -> bool:
        """Move what waits in memory to disk, and forget there what was delivered.

        Returns whether the disk took it all (True when nothing waited).
        """
        if self.problem is None:
            return True
        waiting = [m for m in self._memory if m.seq > self._acked]
        try:
            if waiting:
                self._insert(waiting)
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (self._acked,))
        except sqlite3.Error:
            return False
        self._memory.clear()
        self._count = self._count_on_disk()
        log.warning(
            "MQTT outbox %s takes writes again; %d messages kept in memory meanwhile are on "
            "disk now%s",
            self.path,
            len(waiting),
            f"; {self.dropped} were let go" if self.dropped else "",
        )
        self.problem = None
        self.dropped = 0
        return True

    def peek(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest ``limit`` undelivered messages, in ``seq`` order, left in place."""
        try:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (self._acked, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the MQTT outbox {str(self.path)!r}: {exc}") from None
        found = [OutboxMessage(s, t, bytes(p), q, bool(r)) for s, t, p, q, r in rows]
        # Whatever is in memory came after everything on disk.
        return found + list(self._memory)[: limit - len(found)]

    def ack(self, seq: int) -> None:
        """Forget every message up to and including ``seq``: the broker has them.

        If the disk refuses the deletion, they are only remembered as delivered (and
        deleted at the next :meth:`retry` that works).
        """
        self._acked = max(self._acked, seq)
        while self._memory and self._memory[0].seq <= seq:
            self._memory.popleft()
        try:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
        except sqlite3.Error as exc:
            self._refuse(exc, "update")
        self._count = self._count_on_disk()

    def _count_on_disk(self) -> int:
        try:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE seq > ?", (self._acked,))
            return int(row.fetchone()[0])
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the MQTT outbox {str(self.path)!r}: {exc}") from None
