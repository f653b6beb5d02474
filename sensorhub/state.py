"""Where the hub keeps what must survive a restart: registry, bonds, sessions.

The registry and the bond store are small JSON files that several processes change (a
running hub, ``pair`` in a terminal): each change holds the file's lock from reading
it to writing it back (:func:`changing`), and replaces the file whole
(:func:`replace_file`), so readers never need the lock. A file that must never change
once made (the hub's address) is made with :func:`create_once`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from sensorhub.errors import StateError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: changes are not serialised
    fcntl = None  # type: ignore[assignment]

ENV_VAR = "SENSORHUB_STATE_DIR"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600

log = logging.getLogger(__name__)


def default_state_dir() -> Path:
    """Return ``$SENSORHUB_STATE_DIR``, else the platform's per-user data location."""
    if explicit := os.environ.get(ENV_VAR):
        return Path(explicit).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "sensorhub"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "sensorhub"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else home / ".local" / "share") / "sensorhub"


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory, private to its owner, and check it is writable.

    Everything in it is its owner's alone: the directory (and any below it) ``0700``,
    every file ``0600``. An existing one that others could read, made before this held
    or copied in, is made private, and the log says what was changed.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise StateError(
            f"state directory {path} is not writable; choose another with --state-dir or {ENV_VAR}"
        )
    _make_private(path)
    return path


def _make_private(root: Path) -> None:
    """Take group and others' access away from ``root`` and everything in it; log it."""
    changed: list[str] = []
    failed: list[str] = []
    for directory, subdirectories, files in os.walk(root):  # symbolic links not followed
        here = Path(directory)
        for path, mode in [(here, DIR_MODE)] + [(here / name, FILE_MODE) for name in files]:
            try:
                now = path.lstat()
                if stat.S_ISLNK(now.st_mode) or not stat.S_IMODE(now.st_mode) & 0o077:
                    continue
                os.chmod(path, mode)
            except OSError as exc:
                failed.append(f"{path.relative_to(root)} ({exc.strerror})")
                continue
            changed.append(f"{path.relative_to(root)} {stat.S_IMODE(now.st_mode):04o}")
        subdirectories[:] = [d for d in subdirectories if not (here / d).is_symlink()]
    if changed:
        log.warning(
            "state directory %s was readable by others; made it its owner's alone "
            "(directories 0700, files 0600): %s",
            root,
            ", ".join(changed),
        )
    if failed:
        log.warning("cannot make these private in %s: %s", root, ", ".join(failed))


def create_private(path: Path) -> None:
    """Make sure ``path`` exists, created (empty) readable by its owner only.

    For SQLite databases: SQLite gives its ``-wal``, ``-shm`` and ``-journal`` files the
    database file's mode, and would create the database itself ``0644``.
    """
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))


@contextlib.contextmanager
def changing(path: Path, what: str) -> Iterator[None]:
    """Hold ``path``'s lock file (``<name>.lock``, owner only) exclusively.

    Waits while another process changes the file; the lock dies with its process, so a
    killed one never leaves it held. ``what`` names the file in errors ("sensor registry").
    """
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot change {what} {path}: {exc.strerror} (its lock file)") from exc
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def replace_file(path: Path, text: str, what: str) -> None:
    """Write ``text`` to a new file readable by its owner only, sync it, rename it over ``path``.

    A reader sees the old file or the new one, and a crash leaves one of them whole.
    """
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise StateError(f"cannot write {what} {path}: {exc.strerror}") from exc
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def create_once(path: Path, text: str) -> None:
    """Make ``path`` hold ``text``, whole and synced, unless some process made it first.

    Raises OSError; the caller names the file in its error.
    """
    temporary = path.with_name(f".{path.name}-{os.getpid()}")
    _write_synced(temporary, text, os.O_TRUNC)
    try:
        os.link(temporary, path)  # appears whole, and never over one already there
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: an exclusive create instead
        with contextlib.suppress(FileExistsError):
            _write_synced(path, text, os.O_EXCL)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _write_synced(path: Path, text: str, flags: int) -> None:
    """Create ``path`` (with ``flags`` besides O_WRONLY | O_CREAT), write ``text``, sync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, FILE_MODE)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


_REFUSED_BY_DISK = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})


def disk_refused(exc: sqlite3.Error) -> bool:
    """Whether the disk refused a write (full, past a file-size limit, failing).

    Such a write is good and worth making again once there is space; any other error is
    the write's own (by SQLite's primary result code, not the message).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _REFUSED_BY_DISK
