"""Exports read back with the csv, json and pyarrow readers equal what the store holds."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from firmware_protocol import ImuDataFrame, decode
from sensorhub.errors import ConfigError, StateError
from sensorhub.store import SessionStore, export_session
from sensorhub.store.schema import RECORD_COLUMNS
from tests.test_store_data import CLOCK_OFFSET_S, Recorded, recorded_copy

TABLES = {"reps": "rep", "sets": "set", "alerts": "alert"}
IMU_COLUMNS = ("ax", "ay", "az", "gx", "gy", "gz")


def _csv_value(kind: str, text: str) -> Any:
    """What the CSV's text means, by the column's kind."""
    if text == "":
        return None
    if kind == "bool":
        assert text in {"true", "false"}
        return text == "true"
    if kind == "integer":
        return int(text)
    if kind == "real":
        return float(text)
    if kind == "real_list":
        return json.loads(text)
    return text


def read_back(path: Path, kinds: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of an exported file, with the reader of its format."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == list(kinds)
            return [{k: _csv_value(kinds[k], v) for k, v in row.items()} for row in reader]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    table = pq.read_table(path)
    assert table.column_names == list(kinds)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def record_kinds(kind: str) -> dict[str, str]:
    return {c.name: "text" if c.kind == "athlete" else c.kind for c in RECORD_COLUMNS[kind]}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return recorded_copy(tmp_path_factory.mktemp("state"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_reads_back_equal_to_the_store(recorded: Recorded, tmp_path: Path, fmt: str) -> None:
    store = SessionStore.open_readonly(recorded.path)
    sid = recorded.session_id
    out = tmp_path / "out" / "nested"
    written = export_session(store, sid, out, fmt, raw=True)
    names = [p.name for p in written]
    assert names == [
        f"session-{sid}.json",
        *(f"session-{sid}-{table}.{fmt}" for table in (*TABLES, "samples")),
    ]
    assert not list(out.glob("*.part"))
    for table, kind in TABLES.items():
        rows = read_back(out / f"session-{sid}-{table}.{fmt}", record_kinds(kind))
        records = {"rep": store.reps, "set": store.sets, "alert": store.alerts}[kind](sid)
        stored = [{k: v for k, v in r.items() if k != "type"} for r in records]
        assert rows == stored
        assert rows, f"the session has {table}"
    metadata = json.loads((out / f"session-{sid}.json").read_text())
    assert metadata["id"] == sid
    assert metadata["clock_offset_s"] == CLOCK_OFFSET_S
    assert metadata["files"] == names[1:]

    kinds = {"address": "text", "role": "text", "athlete": "text", "t": "real"}
    kinds |= dict.fromkeys(IMU_COLUMNS, "real")  # no bar-velocity sensor: no such columns
    samples = read_back(out / f"session-{sid}-samples.{fmt}", kinds)
    expected: dict[str, list[Any]] = {name: [] for name in kinds}
    for role, batch in recorded.batches:
        frame = decode(batch.frame)
        assert isinstance(frame, ImuDataFrame)
        n = len(batch.t)
        expected["address"] += [batch.address] * n
        expected["role"] += [role] * n
        expected["athlete"] += ["Ada"] * n
        expected["t"] += (batch.t + CLOCK_OFFSET_S).tolist()
        for i, name in enumerate(IMU_COLUMNS):
            expected[name] += (frame.accel if i < 3 else frame.gyro)[:, i % 3].tolist()
    assert len(samples) == len(expected["t"])
    for name, values in expected.items():
        got = [row[name] for row in samples]
        if name in {"address", "role", "athlete"}:
            assert got == values
        else:
            assert np.array_equal(np.array(got), np.array(values)), name
    # Unix seconds, as the records' times: the first sample precedes the first rep.
    assert samples[0]["t"] < store.reps(sid)[0]["t_start"]
    store.close()


def test_export_errors(recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore.open_readonly(recorded.path)
    with pytest.raises(StateError, match="no session 42"):
        export_session(store, 42, tmp_path, "csv")
    with pytest.raises(ConfigError, match="'xlsx' is not one of csv, jsonl, parquet"):
        export_session(store, recorded.session_id, tmp_path, "xlsx")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot create .*check --out"):
        export_session(store, recorded.session_id, blocker / "out", "csv")
    # pyarrow is an optional extra: without it, Parquet says how to get it.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"pip install 'sensorhub\[parquet\]'"):
        export_session(store, recorded.session_id, tmp_path / "p", "parquet")
    assert not (tmp_path / "p").exists()
    store.close()
