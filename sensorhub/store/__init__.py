"""Where sessions are kept: the SQLite session store and its exports.

A replay of a stored session is the hub's pipeline fed from here: :mod:`sensorhub.replay`.

The names below are loaded on first use: a command that only lists sessions does not
import what exports them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sensorhub.store.schema import FORMATS, ExportFormat

if TYPE_CHECKING:
    from sensorhub.store.db import FILE_NAME, RawBatch, SessionStore
    from sensorhub.store.export import export_session

__all__ = [
    "FILE_NAME",
    "FORMATS",
    "ExportFormat",
    "RawBatch",
    "SessionStore",
    "export_session",
]

_HOMES = {
    "FILE_NAME": "db",
    "RawBatch": "db",
    "SessionStore": "db",
    "export_session": "export",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
