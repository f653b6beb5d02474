"""`sensorhub demo` as the quick start runs it: its own process, the embedded broker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)


def test_demo_records_a_session_and_says_how_to_export_it(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    command = ["demo", "--no-ui", "--duration", "26", "--state-dir", str(state)]
    result = subprocess.run(
        [sys.executable, "-m", "sensorhub", *command],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"embedded MQTT broker listening on mqtt://127\.0\.0\.1:\d+", result.stderr)
    reps = [line for line in result.stdout.splitlines() if line.startswith("rep ")]
    assert len(reps) >= 3, result.stdout
    summary = re.search(r"Session (\d+): (\d+) sets, (\d+) reps, stored in (\S+)", result.stdout)
    assert summary, result.stdout
    session, sets, rep_count = (int(summary.group(i)) for i in (1, 2, 3))
    assert (sets, rep_count) == (1, len(reps))
    assert f"sensorhub export {session} --format csv" in result.stdout

    # What the summary promises works: the session is listed and exports.
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorhub",
            "sessions",
            "list",
            "--json",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    sessions = json.loads(listed.stdout)
    assert [(s["id"], s["reps"], s["athletes"]) for s in sessions] == [
        (session, rep_count, ["Demo"])
    ]
