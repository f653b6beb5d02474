"""`sensorhub sessions`, `export` and `replay` end to end, on a recorded session."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensorhub.cli import main
from sensorhub.registry import RegisteredSensor
from sensorhub.replay import replay_session
from sensorhub.store import SessionStore
from tests.mosquitto import Mosquitto, free_port
from tests.service_helpers import subscriber, validate
from tests.test_store_data import CLOCK_OFFSET_S, HUB_T0, Recorded, recorded_copy

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a process of its own, as people do."""
    return subprocess.run(
        [sys.executable, "-m", "sensorhub", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """Run the command in this process (the import costs seconds per process)."""
    monkeypatch.setenv("COLUMNS", "200")  # rich fits its tables to the terminal's width

    def run_here(*args: str) -> Ran:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run_here


def sensors(stored: list[dict[str, Any]]) -> list[RegisteredSensor]:
    return [
        RegisteredSensor(
            s["address"],
            s["kind"],
            s["role"],
            s["athlete"],
            s["name"],
            calibration=s["calibration"],
        )
        for s in stored
    ]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return recorded_copy(tmp_path_factory.mktemp("state"))


def test_sessions_list_and_show(recorded: Recorded, cli: Callable[..., Ran]) -> None:
    state = str(recorded.path.parent)
    listing = run("sessions", "list", "--json", "--state-dir", state)
    assert listing.returncode == 0, listing.stderr
    [entry] = json.loads(listing.stdout)
    assert entry["id"] == recorded.session_id
    assert entry["athletes"] == ["Ada"]
    assert entry["sets"] == len(recorded.of("set"))
    # Whole reps, as the sets count them; the partial ones apart (the recording has some).
    partial = [r for r in recorded.of("rep") if r["partial"]]
    assert partial
    assert entry["reps"] == sum(s["rep_count"] for s in recorded.of("set"))
    assert entry["reps"] == len(recorded.of("rep")) - len(partial)
    assert entry["partial_reps"] == len(partial)
    assert entry["started"].endswith("Z")
    assert entry["ended"] is not None
    assert entry["interrupted"] is False
    table = cli("sessions", "list", "--state-dir", state)
    assert table.returncode == 0, table.stderr
    assert "Ada (hip_thrust)" in table.stdout
    assert f"{entry['reps']} (+{len(partial)} partial)" in table.stdout

    shown = cli("sessions", "show", str(recorded.session_id), "--json", "--state-dir", state)
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert details["reps"] == recorded.of("rep")
    assert details["sets"] == recorded.of("set")
    assert [s["role"] for s in details["sensors"]] == ["bar", "pelvis"]
    text = cli("sessions", "show", str(recorded.session_id), "--state-dir", state)
    assert text.returncode == 0, text.stderr
    assert "best MCV" in text.stdout
    assert text.stdout.count("(partial)") == sum(r["partial"] for r in recorded.of("rep"))


def test_export_prints_the_files_it_wrote(
    recorded: Recorded, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out = tmp_path / "export"
    state = str(recorded.path.parent)
    result = cli("export", "1", "--format", "jsonl", "--out", str(out), "--state-dir", state)
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert [p.name for p in paths] == [
        "session-1.json",
        "session-1-reps.jsonl",
        "session-1-sets.jsonl",
        "session-1-alerts.jsonl",
    ]
    reps = [json.loads(line) for line in paths[1].read_text().splitlines()]
    assert len(reps) == len(recorded.of("rep"))


def test_replay_finds_the_live_reps_and_sets(recorded: Recorded, cli: Callable[..., Ran]) -> None:
    result = cli("replay", "1", "--json", "--state-dir", str(recorded.path.parent))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    full = [r for r in found["reps"] if not r["partial"]]
    assert len(full) == recorded.truth_full_reps
    assert len(found["sets"]) == len(recorded.of("set"))
    # Same frames, same times, same settings: the very records of the live run.
    assert found["reps"] == recorded.of("rep")
    assert found["sets"] == recorded.of("set")


def test_replay_api_sends_records_to_sinks(recorded: Recorded, tmp_path: Path) -> None:
    # The first 40 s of the session (the first set) in a store of its own: quick to analyse.
    store = SessionStore(tmp_path / "sessions.db")
    live = SessionStore.open_readonly(recorded.path)
    bar, pelvis = sensors(live.session(1)["sensors"])
    live.close()
    session_id = store.start_session(
        athletes={"Ada": {"exercise": "hip_thrust", "load_kg": 80.0}},
        sensors=[bar, pelvis],
        clock_offset_s=CLOCK_OFFSET_S,
    )
    for role, batch in recorded.batches:
        if batch.t[0] < HUB_T0 + 40.0:
            store.add_batch(session_id, bar if role == "bar" else pelvis, batch)
    seen: list[dict[str, object]] = []
    records = list(replay_session(store, session_id, kinds={"rep", "tilt"}, sinks=[seen.append]))
    store.close()
    assert seen == records
    assert {r["type"] for r in records} == {"rep", "tilt"}
    reps = [r for r in records if r["type"] == "rep"]
    assert reps == [r for r in recorded.of("rep") if r["t_end"] < reps[-1]["t_end"] + 0.001]
    assert len(reps) >= 5
    tilts = [r for r in records if r["type"] == "tilt"]
    assert len(tilts) > 100  # the live stream, several a second


@pytest.mark.parametrize(
    "args",
    [
        ("sessions", "show", "99"),
        ("replay", "99"),
        ("export", "99", "--out", "unused"),
    ],
)
def test_unknown_session_is_a_clear_error(
    recorded: Recorded, args: tuple[str, ...], cli: Callable[..., Ran]
) -> None:
    result = cli(*args, "--state-dir", str(recorded.path.parent))
    assert result.returncode == 2
    assert "sensorhub: error: no session 99; `sensorhub sessions list` shows them" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_store_yet_is_a_clear_error(
    tmp_path: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORHUB_STATE_DIR", str(tmp_path / "home"))
    result = cli("sessions", "list", "--state-dir", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "no session store at" in result.stderr
    # Someone who ran the demo looks for its sessions here: they are elsewhere.
    demo = tmp_path / "home" / "demo"
    assert f"the demo keeps its sessions apart, in {demo}" in result.stderr
    assert f"`sensorhub sessions list --state-dir {demo}`" in result.stderr
    assert not (tmp_path / "empty").exists()  # reading creates nothing


def test_an_empty_store_file_is_named_as_such(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    (tmp_path / "sessions.db").write_bytes(b"")
    result = cli("sessions", "list", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "sessions.db is empty: not a sensorhub session store yet" in result.stderr
    assert "schema" not in result.stderr  # nothing to upgrade


async def test_replay_publishes_to_a_broker(recorded: Recorded, tmp_path: Path) -> None:
    async with Mosquitto(tmp_path) as broker, subscriber(broker.port) as sub:
        state = str(recorded.path.parent)
        args = ["replay", "1", "--json", "--publish", broker.url, "--state-dir", state]
        code = await asyncio.to_thread(main, args)
        assert code == 0
        await sub.wait_for(
            lambda _: len(sub.json_on("sensorhub/replay/events")) >= len(recorded.records),
            10,
            "the replayed records",
        )
    reps = sub.json_on("/athletes/ada/reps")
    assert [r["t_end"] for r in reps] == [r["t_end"] for r in recorded.of("rep")]
    for rep in reps:
        validate(rep, "rep")
        assert rep["session_id"] == 1


def test_replay_to_a_broker_that_is_not_there_fails_clearly(
    recorded: Recorded, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sensorhub.cli.sessions.PUBLISH_TIMEOUT_S", 2.0)
    url = f"mqtt://127.0.0.1:{free_port()}"
    result = cli("replay", "1", "--publish", url, "--state-dir", str(recorded.path.parent))
    assert result.returncode == 2
    assert "did not take" in result.stderr
