"""Writes the disk refused, kept in memory in their order until it takes them, within a bound.

A full disk must not lose a rep: while the session store cannot write, what it is given
waits here and is written, oldest first, once there is space. Memory is not endless, so
the hold has a size in bytes and a stated policy for when it is reached:

* raw frames (:attr:`Worth.FRAME`) go first, the oldest first: they are the bulk, and a
  gap in them costs a replay some seconds, not a result;
* then, only when no frame is left, the oldest reps, sets and alerts
  (:attr:`Worth.RECORD`);
* session starts and ends and athletes joining (:attr:`Worth.SESSION`) are never dropped:
  a few bytes each, and the records after them refer to them.

Whatever is dropped is counted, by worth, so the loss can be told.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Generic, TypeVar

__all__ = ["DEFAULT_HOLD_BYTES", "HeldWrite", "Worth", "WriteHold"]

DEFAULT_HOLD_BYTES: Final = 64 * 1024 * 1024
"""About a minute of raw frames from 40 sensors, or hours from a rack of two; reps and
sets (about a kilobyte each) fit by the ten thousand besides."""

T = TypeVar("T")


class Worth(IntEnum):
    """What a held write is worth: the lower, the sooner it is dropped when memory is short."""

    FRAME = 0
    RECORD = 1
    SESSION = 2


@dataclass(frozen=True, slots=True)
class HeldWrite:
    """One write the session store accepted: made again if its transaction is lost."""

    what: str
    """``frame``, ``rep``, ``set``, ``alert``, or ``session`` (a start, end, joining athlete)."""
    session_id: int
    run: Callable[[sqlite3.Connection], None]
    """Makes the write in the open transaction (ids are looked up when it runs)."""
    worth: Worth
    size: int
    """About how many bytes of memory it holds."""
    doing: str
    """What it does, for errors: ``record a rep``."""
    whole_rep: bool = False


class WriteHold(Generic[T]):
    """Held writes in the order they were made, within ``max_bytes``; not thread-safe.

    ``sizes`` are the caller's estimate of the memory an item takes. Session writes are
    kept beyond the bound (they are tiny and few); everything else is dropped to stay
    within it, as the module docstring says.
    """

    def __init__(self, max_bytes: int = DEFAULT_HOLD_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped_frames = 0
        self.dropped_records = 0
        self._order = itertools.count()
        # Two queues, so that the oldest frame is dropped in O(1); (order, worth, size, item).
        self._frames: deque[tuple[int, Worth, int, T]] = deque()
        self._events: deque[tuple[int, Worth, int, T]] = deque()

    def __len__(self) -> int:
        return len(self._frames) + len(self._events)

    @property
    def frames(self) -> int:
        """Raw frames held now."""
        return len(self._frames)

    @property
    def events(self) -> int:
        """Events of value (records and session writes) held now."""
        return len(self._events)

    def put(self, item: T, *, worth: Worth, size: int) -> None:
        """Keep ``item`` behind everything held; drop what the bound says if it is passed."""
        entry = (next(self._order), worth, max(size, 0), item)
        (self._frames if worth is Worth.FRAME else self._events).append(entry)
        self.bytes += entry[2]
        while self.bytes > self.max_bytes and self._drop_one():
            pass

    def _drop_one(self) -> bool:
        """Drop the oldest frame, else the oldest record; False if only session writes are left."""
        if self._frames:
            self.bytes -= self._frames.popleft()[2]
            self.dropped_frames += 1
            return True
        for i, (_, worth, size, _item) in enumerate(self._events):
            if worth is Worth.RECORD:
                del self._events[i]
                self.bytes -= size
                self.dropped_records += 1
                return True
        return False

    def __iter__(self) -> Iterator[T]:
        """Everything held, oldest first."""
        for _, _, _, item in heapq.merge(self._frames, self._events):
            yield item

    def oldest(self, count: int) -> list[T]:
        """The ``count`` oldest items, left in place (write them, then :meth:`forget`)."""
        return list(itertools.islice(self, count))

    def forget(self, count: int) -> None:
        """Remove the ``count`` oldest items: they are written."""
        for _ in range(count):
            if self._frames and (not self._events or self._frames[0][0] < self._events[0][0]):
                self.bytes -= self._frames.popleft()[2]
            elif self._events:
                self.bytes -= self._events.popleft()[2]
            else:
                return

    def reset_counts(self) -> None:
        """Start counting drops afresh (a new time the disk refuses)."""
        self.dropped_frames = 0
        self.dropped_records = 0
