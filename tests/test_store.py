"""The session store on real SQLite files: schema, round trips, crashes, bad directories."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_protocol import ImuDataFrame
from sensorhub.errors import ConfigError, StateError
from sensorhub.records import iso
from sensorhub.registry import RegisteredSensor
from sensorhub.store import SessionStore, db
from sensorhub.store.schema import APPLICATION_ID, RECORD_COLUMNS, SCHEMA_VERSION
from sensorhub.stream import SensorBatch
from tests.test_store_data import BAR, PELVIS, RATE_HZ, recorded_copy

ADA = {"Ada": {"exercise": "hip_thrust", "load_kg": 80.0}}
SENSOR = RegisteredSensor(BAR, "imu", "bar", "Ada")
ROOT = Path(__file__).resolve().parents[1]


def frame_batch(i: int, samples: int = 10) -> SensorBatch:
    """A genuine IMU frame whose first sample time is ``i`` (s): a marker for frame ``i``."""
    counts = np.full((samples, 6), i % 30000, dtype="<i2")
    frame = ImuDataFrame(seq=i % 65536, timestamp_us=0, interval_us=10_000, samples=counts)
    return SensorBatch(BAR, float(i) + np.arange(samples) / RATE_HZ, frame=bytes(frame))


def test_a_new_store_has_the_schema_and_reopens(tmp_path: Path) -> None:
    path = SessionStore.path_in(tmp_path / "state")
    store = SessionStore(path)
    session_id = store.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=1e9)
    store.add_batch(session_id, SENSOR, frame_batch(1))
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"athletes", "sensors", "sessions", "session_athletes", "session_sensors"} <= tables
    assert {"sets", "reps", "alerts", "frames"} <= tables
    again = SessionStore(path)
    second = again.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=1e9)
    assert second == session_id + 1
    assert [s["id"] for s in again.sessions()] == [session_id, second]
    assert again.session(session_id)["sensors"][0]["frames"] == 1
    again.close()


def test_records_and_frames_round_trip(tmp_path: Path) -> None:
    recorded = recorded_copy(tmp_path)
    store = SessionStore.open_readonly(recorded.path)
    # Every metric comes back as the live analysis made it, under the record's own names.
    assert store.reps(recorded.session_id) == recorded.of("rep")
    assert store.sets(recorded.session_id) == recorded.of("set")
    assert store.alerts(recorded.session_id) == recorded.of("alert")
    assert recorded.of("alert"), "the preset tips into anterior tilt: there are alerts"
    for kind, columns in RECORD_COLUMNS.items():
        live = next(r for r in recorded.records if r["type"] == kind)
        assert ["type", *(c.name for c in columns)] == list(live)
    stored = list(store.raw_batches(recorded.session_id))
    assert len(stored) == len(recorded.batches)
    for batch, (role, live_batch) in zip(stored, recorded.batches, strict=True):
        assert (batch.address, batch.role, batch.athlete) == (live_batch.address, role, "Ada")
        assert batch.frame == live_batch.frame
        assert np.array_equal(batch.t, live_batch.t)
    info = store.session(recorded.session_id)
    assert info["clock_offset_s"] == 1_780_000_000.0
    assert info["athletes"] == [
        {
            "athlete": "Ada",
            "exercise": "hip_thrust",
            "load_kg": 80.0,
            "set_gap_s": None,
            "velocity_loss_alert_pct": None,
        }
    ]
    assert [s["address"] for s in info["sensors"]] == [BAR, PELVIS]
    assert info["sensors"][1]["calibration"]["neutral_gravity_sensor"]
    partial = [r for r in recorded.of("rep") if r["partial"]]
    assert info["reps"] == sum(s["rep_count"] for s in recorded.of("set"))  # whole reps
    assert info["partial_reps"] == len(partial) > 0
    assert info["last_data"] == iso(recorded.batches[-1][1].t[0] + 1_780_000_000.0)
    store.close()


def test_sessions_list_and_unknown_ids(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions.db")
    first = store.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=0.0, note="a")
    store.add_record(first, {"type": "tilt", "athlete": "Ada"})  # not kept, not an error
    store.end_session(first)
    store.end_session(first)  # twice: nothing changes
    second = store.start_session(
        athletes={"Ada": ADA["Ada"], "Bo": {"exercise": "squat", "load_kg": None}},
        sensors=[],
        clock_offset_s=0.0,
    )
    store.set_load(second, "Bo", 60.0)
    listing = store.sessions()
    assert [(s["id"], s["athletes"], s["sets"], s["reps"]) for s in listing] == [
        (first, ["Ada"], 0, 0),
        (second, ["Ada", "Bo"], 0, 0),
    ]
    assert listing[0]["ended"] is not None
    assert listing[1]["ended"] is None
    assert listing[1]["interrupted"] is False  # this writer is recording it
    assert store.session(second)["athletes"][1]["load_kg"] == 60.0
    for call in (store.session, store.reps, store.raw_batches, store.end_session):
        with pytest.raises(StateError, match=r"no session 99; `sensorhub sessions list`"):
            call(99)
    with pytest.raises(ConfigError, match="not in session"):
        store.set_load(first, "Cy", 50.0)
    store.close()


@pytest.mark.parametrize(
    ("athletes", "message"),
    [
        ({"Ada": {"exercise": "curls"}}, "exercise 'curls'"),
        ({"Ada": {"exercise": "squat", "load_kg": -5}}, "load_kg"),
        ({"Ada": {"exercise": "squat", "set_gap_s": "long"}}, "set_gap_s"),
        ({" ": {"exercise": "squat"}}, "athlete name"),
    ],
)
def test_bad_session_settings_are_config_errors(
    tmp_path: Path, athletes: dict[str, dict[str, object]], message: str
) -> None:
    store = SessionStore(tmp_path / "sessions.db")
    with pytest.raises(ConfigError, match=message):
        store.start_session(athletes=athletes, sensors=[], clock_offset_s=0.0)
    assert store.sessions() == []
    store.close()


def test_not_a_store_missing_store_and_second_writer(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=r"no session store at .*nothing has been recorded"):
        SessionStore.open_readonly(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    for opener in (SessionStore, SessionStore.open_readonly):
        with pytest.raises(StateError, match="not a sensorhub session store"):
            opener(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite at all" * 100)
    with pytest.raises(StateError, match="not a sensorhub session store"):
        SessionStore.open_readonly(garbage)
    writer = SessionStore(tmp_path / "sessions.db")
    with pytest.raises(StateError, match=f"another sensorhub \\(pid {os.getpid()}\\)"):
        SessionStore(tmp_path / "sessions.db")
    writer.close()
    newer = tmp_path / "sessions.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer sensorhub"):
        SessionStore(newer)


async def test_the_flush_task_commits_within_half_a_second(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    async with SessionStore(path) as store:
        session_id = store.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=0.0)
        store.add_batch(session_id, SENSOR, frame_batch(7))
        reader = SessionStore.open_readonly(path)
        assert reader.session(session_id)["sensors"][0]["frames"] == 0  # not committed yet
        await asyncio.sleep(0.6)
        assert reader.session(session_id)["sensors"][0]["frames"] == 1
        assert reader.sessions()[0]["interrupted"] is False  # the writer is alive
        reader.close()
    # Leaving the context closes the store and ends the sessions it left open.
    final = SessionStore.open_readonly(path)
    assert final.sessions()[0]["ended"] is not None
    final.close()


async def test_the_wal_starts_over_while_frames_keep_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hub writes frames every few milliseconds for hours: a checkpoint running beside
    # them never caught up, and the WAL grew with the session (1 GB an hour at 40 sensors).
    monkeypatch.setattr(db, "CHECKPOINT_INTERVAL_S", 0.2)
    path = tmp_path / "sessions.db"
    wal = path.with_name(path.name + "-wal")
    async with SessionStore(path) as store:
        session_id = store.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=0.0)
        frames = 0
        largest = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for _ in range(4):
                store.add_batch(session_id, SENSOR, frame_batch(frames, samples=40))
                frames += 1
            await asyncio.sleep(0.002)
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        written = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    assert frames > 1000  # the writer kept the WAL busy
    # Started over at each checkpoint: the WAL holds a few intervals' frames, not all.
    assert largest < written / 3, (largest, written)
    reader = SessionStore.open_readonly(path)
    assert reader.session(session_id)["sensors"][0]["frames"] == frames  # nothing lost
    reader.close()


WRITER = """
import asyncio, sys, time
import numpy as np
from pathlib import Path
from sensorhub.registry import RegisteredSensor
from sensorhub.store import SessionStore
from tests.test_store import SENSOR, ADA, frame_batch

async def main():
    async with SessionStore(Path(sys.argv[1])) as store:
        session_id = store.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=0.0)
        i = 0
        while True:
            store.add_batch(session_id, SENSOR, frame_batch(i))
            print(i, time.monotonic(), flush=True)
            i += 1
            await asyncio.sleep(0.01)

asyncio.run(main())
"""


def test_a_killed_writer_loses_at_most_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    added: list[tuple[int, float]] = []
    for line in child.stdout:
        i, at = line.split()
        added.append((int(i), float(at)))
        if float(at) - added[0][1] > 2.5:
            break
    child.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    child.wait(timeout=10)
    child.stdout.close()
    store = SessionStore.open_readonly(path)
    kept = {int(batch.t[0]) for batch in store.raw_batches(1)}
    due = {i for i, at in added if at < killed_at - 1.0}
    assert len(due) > 50
    assert due <= kept
    [session] = store.sessions()
    assert session["ended"] is None
    assert session["interrupted"] is True  # nobody holds the writer lock any more
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # The next writer marks the cut-off session for good; it still reads whole.
    writer = SessionStore(path)
    assert writer.cut_off == (1,)  # for the hub to announce, once
    assert writer.sessions()[0]["interrupted"] is True
    assert len(list(writer.raw_batches(1))) == len(kept)
    writer.close()
    again = SessionStore(path)
    assert again.cut_off == ()
    again.close()


def _without_write_permission() -> list[str]:
    """A command prefix under which directory permissions bind (root ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


READ_ONLY_PROBE = """
import sys
from pathlib import Path
from sensorhub.errors import StateError
from sensorhub.store import SessionStore
try:
    SessionStore(Path(sys.argv[1]))
except StateError as exc:
    print(exc)
"""

READ_ONLY_LIST = """
import sys
from pathlib import Path
from sensorhub.store import SessionStore
store = SessionStore.open_readonly(Path(sys.argv[1]))
for session in store.sessions():
    print(session["id"], session["reps"])
"""


def test_a_read_only_state_dir_is_a_clear_error_and_still_readable(tmp_path: Path) -> None:
    recorded = recorded_copy(tmp_path / "state")
    state = tmp_path / "state"
    before = sorted(p.name for p in state.iterdir())
    state.chmod(0o555)
    try:
        prefix = _without_write_permission()
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", READ_ONLY_PROBE, str(recorded.path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        assert "not writable" in probe.stdout
        assert "--state-dir" in probe.stdout
        listing = subprocess.run(
            [*prefix, sys.executable, "-c", READ_ONLY_LIST, str(recorded.path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        whole = [r for r in recorded.of("rep") if not r["partial"]]
        assert listing.stdout.split() == ["1", str(len(whole))]
        assert sorted(p.name for p in state.iterdir()) == before  # nothing left behind
    finally:
        state.chmod(0o755)


DISK_FULL_PROBE = """
import resource, signal, sys
from pathlib import Path
from sensorhub.store import SessionStore
from tests.test_store import SENSOR, ADA, frame_batch

store = SessionStore(Path(sys.argv[1]), hold_bytes=int(sys.argv[2]))
session_id = store.start_session(athletes=ADA, sensors=[SENSOR], clock_offset_s=0.0)
for i in range(200):
    store.add_batch(session_id, SENSOR, frame_batch(i))
store.commit()
# From here the file may not grow: the disk is full.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
size = Path(sys.argv[1] + "-wal").stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20000, hard))
i = 200
rep = {"type": "rep", "athlete": "Ada", "set_index": 1, "partial": False, "t_end": 1.0}
while store.problem is None or i % 50:
    store.add_batch(session_id, SENSOR, frame_batch(i))
    i += 1
    if i % 50 == 0:
        store.commit()
store.add_record(session_id, rep)
end = i + int(sys.argv[3])
for j in range(i, end):  # more frames behind the rep
    store.add_batch(session_id, SENSOR, frame_batch(j))
problem = store.problem
print(problem["message"])
print(i, problem["held_frames"], problem["held_events"], problem["dropped_frames"])
print(end, store.counts(session_id))
# Space returns: closing writes what was held.
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
store.close()
"""


def test_a_full_disk_is_told_and_what_was_held_is_written_when_space_returns(
    tmp_path: Path,
) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the disk refuse, in a process of its own."""
    path = tmp_path / "sessions.db"
    message, held, written = disk_full_probe(path, hold_bytes=64 << 20, frames_after=0)
    assert "full" in message or "failed" in message, message
    assert str(path) in message
    assert held["frames"] > 0
    assert held["events"] == 1
    assert held["dropped"] == 0
    assert written["counts"] == "(0, 1)"  # the held rep counts: it will be written
    (back,) = [line for line in written["log"] if "takes writes again" in line]
    assert f"{held['frames']} raw frames" in back
    assert "1 reps" in back
    assert back.endswith("let go to bound memory: nothing")
    store = SessionStore.open_readonly(path)
    kept = [int(batch.t[0]) for batch in store.raw_batches(1)]
    assert kept == list(range(written["added"]))  # every frame, in order: none lost or twice
    assert len(store.reps(1)) == 1
    assert store.sessions()[0]["ended"] is not None
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def disk_full_probe(
    path: Path, *, hold_bytes: int, frames_after: int
) -> tuple[str, dict[str, int], dict[str, Any]]:
    """Run :data:`DISK_FULL_PROBE`: its problem message, what it held, what it wrote."""
    probe = subprocess.run(
        [sys.executable, "-c", DISK_FULL_PROBE, str(path), str(hold_bytes), str(frames_after)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    message, figures, end = probe.stdout.splitlines()
    refused_at, frames, events, dropped = (int(n) for n in figures.split())
    added, counts = end.split(" ", 1)
    held = {"refused_at": refused_at, "frames": frames, "events": events, "dropped": dropped}
    return message, held, {"added": int(added), "counts": counts, "log": probe.stderr.splitlines()}


def test_past_its_memory_bound_a_full_disk_lets_the_oldest_frames_go_and_keeps_the_rep(
    tmp_path: Path,
) -> None:
    """A file-size limit (RLIMIT_FSIZE) as above; the hold may keep about 60 frames."""
    path = tmp_path / "sessions.db"
    _message, held, written = disk_full_probe(path, hold_bytes=30_000, frames_after=300)
    assert held["dropped"] > 0
    assert held["events"] == 1
    assert written["counts"] == "(0, 1)"
    (back,) = [line for line in written["log"] if "takes writes again" in line]
    assert f"let go to bound memory: {held['dropped']} raw frames" in back
    assert sum("the oldest raw frames are let go" in line for line in written["log"]) == 1
    store = SessionStore.open_readonly(path)
    kept = [int(batch.t[0]) for batch in store.raw_batches(1)]
    assert len(store.reps(1)) == 1  # the rep outlived every frame that came before it
    store.close()
    # Those written before the refusal, then the newest held: the oldest went first.
    assert kept == sorted(kept)
    assert len(kept) == written["added"] - held["dropped"]
    assert kept[-held["frames"] :] == list(
        range(written["added"] - held["frames"], written["added"])
    )
