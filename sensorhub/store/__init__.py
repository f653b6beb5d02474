"""Where sessions are kept: the SQLite session store, its exports, and replays."""

from sensorhub.store.db import FILE_NAME, RawBatch, SessionStore
from sensorhub.store.export import FORMATS, ExportFormat, export_session
from sensorhub.store.replay import RecordSink, plan_replay, replay_session

__all__ = [
    "FILE_NAME",
    "FORMATS",
    "ExportFormat",
    "RawBatch",
    "RecordSink",
    "SessionStore",
    "export_session",
    "plan_replay",
    "replay_session",
]
