"""One writer per session store: an advisory lock beside the database file.

The lock tells a crashed writer's open sessions (nobody holds the lock) from sessions
being recorded right now (the hub holds it), and keeps two hubs from recording into one
file. ``flock`` locks die with their process, so a SIGKILL never leaves a stale lock.
Without ``fcntl`` (Windows) there is no lock: open sessions then count as interrupted
only once the next writer opens the store.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sensorhub.errors import StateError
from sensorhub.store._errors import state_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(path: Path) -> Path:
    """The lock file of the store at ``path``."""
    return path.with_name(path.name + ".lock")


class WriterLock:
    """The held writer lock of one store."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> WriterLock:
        """Take the lock; StateError if the directory is not writable or a writer runs."""
        try:
            fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise state_error(path, "open the session store for recording", exc) from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise StateError(
                    f"another sensorhub (pid {holder}) is recording into {path}; stop it, "
                    "or give this one another --state-dir"
                ) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return cls(fd)

    def release(self) -> None:
        """Let the lock go (closing the descriptor drops the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def writer_alive(path: Path) -> bool:
    """Whether some process holds the writer lock of the store at ``path`` now."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
