"""Where the hub keeps what must survive a restart: registry, bonds, sessions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sensorhub.errors import StateError

ENV_VAR = "SENSORHUB_STATE_DIR"


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
    """Create the state directory, private to its owner, and check it is writable."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise StateError(
            f"state directory {path} is not writable; choose another with --state-dir or {ENV_VAR}"
        )
    return path
