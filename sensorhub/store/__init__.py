"""Where sessions are kept: the SQLite session store, its exports, and replays."""

from sensorhub.store.db import FILE_NAME, RawBatch, SessionStore

__all__ = ["FILE_NAME", "RawBatch", "SessionStore"]
