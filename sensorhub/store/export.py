"""Export a stored session as files other tools read: CSV, JSON Lines or Parquet.

A session gives ``session-<id>-reps``, ``-sets`` and ``-alerts`` files whose columns are
the fields of :mod:`sensorhub.records` (same names, same units), a ``session-<id>.json``
with the session's details, and on request ``-samples``: one row per sample, decoded from
the stored frames, at Unix time. Each file is written beside its final name and renamed
when complete, so a failed export never leaves a truncated file that looks whole.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Final, Protocol

import numpy as np

from firmware_protocol import BarDataFrame, FirmwareProtocolError, ImuDataFrame, decode
from sensorhub.errors import ConfigError, StateError
from sensorhub.records import iso
from sensorhub.store.db import SessionStore
from sensorhub.store.schema import FORMATS, RECORD_COLUMNS, ColumnKind, ExportFormat

__all__ = ["FORMATS", "ExportFormat", "export_session"]

CHUNK_ROWS: Final = 65536
"""Samples per write (and per Parquet row group's piece): bounded memory for long sessions."""
Field = tuple[str, ColumnKind]
IMU_FIELDS: Final[tuple[Field, ...]] = tuple(
    (name, "real") for name in ("ax", "ay", "az", "gx", "gy", "gz")
)
"""Specific force (m/s²) and angular rate (rad/s), in the sensor frame."""
BAR_FIELDS: Final[tuple[Field, ...]] = (("position_m", "real"), ("velocity_mps", "real"))
SAMPLE_KEYS: Final[tuple[Field, ...]] = (
    ("address", "text"),
    ("role", "text"),
    ("athlete", "text"),
    ("t", "real"),
)


class _TableWriter(Protocol):
    def write(self, columns: dict[str, list[Any]]) -> None: ...


def _record_fields(kind: str) -> list[Field]:
    return [(c.name, "text" if c.kind == "athlete" else c.kind) for c in RECORD_COLUMNS[kind]]


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return value


class _CsvWriter:
    def __init__(self, out: IO[str], fields: list[Field]) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow([name for name, _ in fields])

    def write(self, columns: dict[str, list[Any]]) -> None:
        self._writer.writerows(
            [_csv_value(v) for v in row] for row in zip(*columns.values(), strict=True)
        )


class _JsonLinesWriter:
    def __init__(self, out: IO[str], fields: list[Field]) -> None:
        self._out = out
        self._names = [name for name, _ in fields]

    def write(self, columns: dict[str, list[Any]]) -> None:
        for row in zip(*columns.values(), strict=True):
            values = [
                None if isinstance(v, float) and math.isnan(v) else v for v in row
            ]  # JSON has no NaN
            self._out.write(json.dumps(dict(zip(self._names, values, strict=True))) + "\n")


class _ParquetWriter:
    def __init__(self, path: Path, fields: list[Field], pa: ModuleType, pq: ModuleType) -> None:
        types = {
            "text": pa.string(),
            "real": pa.float64(),
            "integer": pa.int64(),
            "bool": pa.bool_(),
            "real_list": pa.list_(pa.float64()),
        }
        self._pa = pa
        self._schema = pa.schema([(name, types[kind]) for name, kind in fields])
        self._writer = pq.ParquetWriter(path, self._schema)

    def write(self, columns: dict[str, list[Any]]) -> None:
        arrays = [
            # from_pandas: NaN marks a column that does not apply to the row: null.
            self._pa.array(values, type=field.type, from_pandas=True)
            for values, field in zip(columns.values(), self._schema, strict=True)
        ]
        self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def _pyarrow() -> tuple[ModuleType, ModuleType]:
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ConfigError(
            "Parquet export needs pyarrow: pip install 'sensorhub[parquet]' "
            "(or export --format csv or jsonl)"
        ) from None


class _Exporter:
    """Writes one session's files into one directory."""

    def __init__(self, store: SessionStore, session_id: int, out_dir: Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
        self.store = store
        self.session_id = session_id
        self.out_dir = out_dir
        self.fmt = fmt
        self.arrow = _pyarrow() if fmt == "parquet" else None
        self.written: list[Path] = []

    def table(self, name: str, fields: list[Field], chunks: Iterable[dict[str, list[Any]]]) -> None:
        """Write one table from chunks of columns (name → values, in ``fields`` order)."""
        path = self.out_dir / f"session-{self.session_id}-{name}.{self.fmt}"
        partial = path.with_name(path.name + ".part")
        try:
            with ExitStack() as stack:
                writer: _TableWriter
                if self.arrow is not None:
                    parquet = _ParquetWriter(partial, fields, *self.arrow)
                    stack.callback(parquet.close)
                    writer = parquet
                else:
                    out = stack.enter_context(partial.open("w", encoding="utf-8", newline=""))
                    writer = (_CsvWriter if self.fmt == "csv" else _JsonLinesWriter)(out, fields)
                for chunk in chunks:
                    writer.write(chunk)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}; check --out") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        self.written.append(path)

    def records(self, kind: str, name: str) -> None:
        rows = {"rep": self.store.reps, "set": self.store.sets, "alert": self.store.alerts}[kind](
            self.session_id
        )
        fields = _record_fields(kind)
        columns = {field: [row[field] for row in rows] for field, _ in fields}
        self.table(name, fields, [columns])

    def metadata(self, info: dict[str, Any]) -> None:
        path = self.out_dir / f"session-{self.session_id}.json"
        document = {**info, "exported": iso(_now()), "files": [p.name for p in self.written]}
        try:
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}; check --out") from exc
        self.written.insert(0, path)


def _now() -> float:
    import time  # noqa: PLC0415 - only the metadata wants the wall clock

    return time.time()


def _sample_chunks(
    store: SessionStore, session_id: int, offset_s: float, fields: list[Field]
) -> Iterator[dict[str, list[Any]]]:
    """Columns of samples, about CHUNK_ROWS rows at a time; NaN where a column does not apply."""
    pending: dict[str, list[Any]] = {name: [] for name, _ in fields}
    rows = 0
    for batch in store.raw_batches(session_id):
        try:
            frame = decode(batch.frame)
        except FirmwareProtocolError as exc:
            raise StateError(
                f"session {session_id}: a stored frame of {batch.address} does not decode ({exc})"
            ) from exc
        n = len(batch.t)
        if not isinstance(frame, ImuDataFrame | BarDataFrame) or frame.count != n:
            raise StateError(
                f"session {session_id}: a stored frame of {batch.address} does not match "
                "its timestamps; the store is damaged"
            )
        values: dict[str, Any] = {
            "address": [batch.address] * n,
            "role": [batch.role] * n,
            "athlete": [batch.athlete] * n,
            "t": batch.t + offset_s,
        }
        if isinstance(frame, ImuDataFrame):
            for i, (name, _) in enumerate(IMU_FIELDS):
                values[name] = (frame.accel if i < 3 else frame.gyro)[:, i % 3]
        else:
            values["position_m"] = frame.position
            values["velocity_mps"] = frame.velocity
        nan = np.full(n, np.nan)
        for name, _ in fields:
            column = values.get(name, nan)
            pending[name] += column if isinstance(column, list) else column.tolist()
        rows += n
        if rows >= CHUNK_ROWS:
            yield pending
            pending = {name: [] for name, _ in fields}
            rows = 0
    if rows or not any(pending.values()):
        yield pending


def export_session(
    store: SessionStore,
    session_id: int,
    out_dir: Path,
    fmt: str,
    *,
    raw: bool = False,
) -> list[Path]:
    """Write a session's files into ``out_dir`` (created); return their paths."""
    info = store.session(session_id)  # an unknown id fails before anything is written
    exporter = _Exporter(store, session_id, out_dir, fmt)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out_dir}: {exc.strerror or exc}; check --out") from exc
    exporter.records("rep", "reps")
    exporter.records("set", "sets")
    exporter.records("alert", "alerts")
    if raw:
        kinds = {sensor["kind"] for sensor in info["sensors"] if sensor["frames"]}
        fields = list(SAMPLE_KEYS)
        if "imu" in kinds:
            fields += IMU_FIELDS
        if "bar_velocity" in kinds:
            fields += BAR_FIELDS
        exporter.table(
            "samples", fields, _sample_chunks(store, session_id, info["clock_offset_s"], fields)
        )
    exporter.metadata(info)
    return exporter.written
