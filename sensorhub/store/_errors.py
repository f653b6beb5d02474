"""SQLite's errors turned into ours, each naming the store and what would fix it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sensorhub.errors import StateError
from sensorhub.state import ENV_VAR


def state_error(path: Path, doing: str, exc: sqlite3.Error | OSError) -> StateError:
    """A StateError for a failure while ``doing`` something with the store at ``path``."""
    text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    lowered = text.lower()
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered
    ):
        return StateError(
            f"{path} is not a sensorhub session store or is damaged ({text}); "
            "move it out of the state directory and sensorhub starts a new one"
        )
    if "full" in lowered or "no space" in lowered or "too large" in lowered:
        return StateError(
            f"cannot {doing}: the disk holding {path} is full ({text}); free some space "
            "(what was saved before is intact)"
        )
    if "i/o error" in lowered:
        # A write the disk refused: SQLite says this, not "full", for some short writes.
        return StateError(
            f"cannot {doing}: writing {path} failed ({text}); the disk may be full or "
            "failing: free some space or check it (what was saved before is intact)"
        )
    if (
        "readonly" in lowered
        or "read-only" in lowered
        or "permission" in lowered
        or "unable to open" in lowered
    ):
        return StateError(
            f"cannot {doing}: {path} is not writable ({text}); make the state directory "
            f"{path.parent} writable, or choose another with --state-dir or ${ENV_VAR}"
        )
    if "locked" in lowered or "busy" in lowered:
        return StateError(f"cannot {doing}: {path} is busy in another process ({text}); try again")
    return StateError(f"session store {path}: cannot {doing}: {text}")
