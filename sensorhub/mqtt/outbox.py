"""A durable FIFO of QoS 1 messages on disk, so nothing of value is lost while the broker is away.

Every message gets a sequence number that only ever grows, across restarts too, and the
number is written into its JSON payload (``"seq": n``). The publisher sends in sequence
order and acknowledges (deletes) a message only after the broker's PUBACK, so a message
may arrive twice after a reconnect but never goes missing: subscribers drop any ``seq``
they have already seen on that topic.

SQLite in WAL mode, one table; ``synchronous=NORMAL`` keeps a put to a few tens of
microseconds, and a power cut loses at most the last moments, never the file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from sensorhub.errors import StateError
from sensorhub.state import create_private

__all__ = ["Outbox", "OutboxFullError", "OutboxMessage"]

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES: Final = 1_000_000
"""About 1 GB of reps and sets: weeks of training with the broker away."""

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
    because the outbox was full.
    """

    def __init__(self, path: Path, *, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        self.path = path
        self.max_messages = max_messages
        self.refused = 0
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
        self._db.close()

    def __len__(self) -> int:
        return int(self._count)

    def put(
        self, topic: str, payload: Mapping[str, Any], *, qos: int = 1, retain: bool = False
    ) -> int:
        """Store a JSON object for ``topic`` and return its ``seq`` (also put in the payload).

        Raises :class:`OutboxFullError` when full, :class:`StateError` when the disk fails,
        and ``ValueError`` for a payload JSON cannot carry (NaN, non-string keys).
        """
        if self._count >= self.max_messages:
            self.refused += 1
            raise OutboxFullError(
                f"MQTT outbox {str(self.path)!r} is full ({self.max_messages} messages "
                f"waiting for the broker); {self.refused} refused so far. Bring the broker "
                "back, or raise max_messages"
            )
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
                ).fetchone()
                seq = (row[0] if row else 0) + 1
                body = json.dumps(
                    {**payload, "seq": seq}, separators=(",", ":"), allow_nan=False
                ).encode()
                self._db.execute(
                    "INSERT INTO outbox (seq, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                    (seq, topic, body, qos, int(retain)),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write to the MQTT outbox {str(self.path)!r}: {exc}") from None
        except TypeError as exc:
            raise ValueError(f"payload for {topic} is not JSON: {exc}") from None
        self._count += 1
        return int(seq)

    def peek(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest ``limit`` messages, in ``seq`` order, left in place."""
        try:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the MQTT outbox {str(self.path)!r}: {exc}") from None
        return [OutboxMessage(s, t, bytes(p), q, bool(r)) for s, t, p, q, r in rows]

    def ack(self, seq: int) -> None:
        """Forget every message up to and including ``seq``: the broker has them."""
        try:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
        except sqlite3.Error as exc:
            raise StateError(f"cannot update the MQTT outbox {str(self.path)!r}: {exc}") from None
        self._count -= deleted
