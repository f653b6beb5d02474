"""The development-data converter, on a small tree laid out as that repository is."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from firmware_protocol.virtual.motion import Trajectory
from sensorhub.analysis.labelled import read_labels
from tests.test_analysis_cli import SQUATS, measure

TOOL = Path(__file__).resolve().parents[1] / "tools" / "wireless_imu_activity_tracking.py"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wireless_imu_activity_tracking", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, check=False
    )


def data2_rows(t_ms: np.ndarray, accel: np.ndarray, gyro: np.ndarray) -> list[str]:
    """Rows as the board logs them: node, t ms, accel m/s², gyro rad/s, magnetometer µT."""
    return [
        "1,{:.0f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},52.280,-60.436,102.675".format(
            t, *a, *g
        )
        for t, a, g in zip(t_ms, accel, gyro, strict=True)
    ]


def still(seconds: float, rate: float, t0_ms: float) -> list[str]:
    t = t0_ms + np.arange(0, seconds * 1000, 1000 / rate)
    accel = np.tile([-0.1, 0.2, -9.8], (len(t), 1))
    return data2_rows(t, accel, np.zeros((len(t), 3)))


def fake_source(root: Path) -> Path:
    """Squats, a deadlift with a long gap, a short RDL, console logs and a row to leave out."""
    data2, data = root / "data2", root / "data"
    for folder in ("squat", "dead", "rdl", "row"):
        (data2 / folder).mkdir(parents=True)
    for folder in ("squat", "rdl"):
        (data / folder).mkdir(parents=True)
    # A real set, from the sensor models: six squats, logged in ms at 100 Hz.
    traj = Trajectory.from_scenario(SQUATS, 41)
    t, accel, gyro = measure(traj, "bar", 100.0, 41)
    squats = data2_rows(2_733_508 + np.round(t * 1000), accel, gyro)
    (data2 / "squat" / "squat_ann_set1_reps6_1.csv").write_text(
        "\n".join([*squats[:10], "text could not be decoded", *squats[10:]]) + "\n"
    )
    (data2 / "dead" / "dead_bob_set1_rep10_1.csv").write_text(
        "\n".join(still(20, 50, 1_000_000) + still(20, 50, 1_140_000)) + "\n"
    )
    (data2 / "rdl" / "rdl_cy_set1_reps10_1.csv").write_text("\n".join(still(12, 50, 0)) + "\n")
    (data2 / "row" / "row_ann_set1_reps10_1.csv").write_text("\n".join(still(30, 50, 0)) + "\n")
    log = ["Scanning for devices...", "Connected to all 1 devices. Listening for data..."]
    for i in range(60):  # a reading every 0.6 s, of half the axes each time
        for k, axis in enumerate(("AX", "AY", "AZ", "GX", "GY", "GZ", "MX")):
            if (i + k) % 2 == 0:
                log.append(f"2,{axis},{4_055_910 + 600 * i},{(i % 7) - 3 + k * 0.5:.1f}")
    log += ["Traceback (most recent call last):", "KeyboardInterrupt"]
    (data / "squat" / "ann_squat_set1.log").write_text("\n".join(log) + "\n")
    (data / "rdl" / "ann_rdl_set1.log").write_text("Scanning for devices...\n")
    return root


def test_convert_a_tree_laid_out_as_the_repository(tmp_path: Path) -> None:
    src, out = fake_source(tmp_path / "src"), tmp_path / "out"
    result = run_tool(str(src), str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 5 sets" in result.stdout
    assert "1 to score, 4 set aside" in result.stdout
    assert f"sensorhub evaluate --recordings {out} --json" in result.stdout
    labels = {label.name: label for label in read_labels(out)}  # the format evaluate reads
    assert sorted(labels) == [
        "data2_dead_bob_set1_rep10_1.csv",
        "data2_rdl_cy_set1_reps10_1.csv",
        "data2_squat_ann_set1_reps6_1.csv",
        "data_ann_rdl_set1.csv",
        "data_ann_squat_set1.csv",
    ]
    squat = labels["data2_squat_ann_set1_reps6_1.csv"]
    assert (squat.role, squat.exercise, squat.reps, squat.set_aside) == ("bar", "squat", 6, None)
    assert squat.note is not None
    assert "from data2/squat/squat_ann_set1_reps6_1.csv" in squat.note
    assert "1 line(s) that are no sample left out" in squat.note
    assert "100.0 Hz" in squat.note
    gap = labels["data2_dead_bob_set1_rep10_1.csv"]
    assert gap.exercise == "deadlift"
    assert gap.set_aside is not None
    assert "a 120.0 s gap without samples at 20.0 s" in gap.set_aside
    short = labels["data2_rdl_cy_set1_reps10_1.csv"]
    assert short.exercise == "romanian_deadlift"
    assert short.set_aside is not None
    assert "12.0 s long, too short for the 10 reps" in short.set_aside
    slow = labels["data_ann_squat_set1.csv"]
    assert slow.reps is None
    assert slow.set_aside is not None
    assert "sampled at 1.7 Hz" in slow.set_aside
    assert "its name gives no rep count" in slow.set_aside
    empty = labels["data_ann_rdl_set1.csv"]
    assert empty.set_aside is not None
    assert "holds no samples" in empty.set_aside
    # Samples copied as they were, time in seconds exactly; the magnetometer kept.
    with (out / squat.name).open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["t", "ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz"]
    assert rows[1][0] == "2733.508"
    assert len(rows) - 1 == len(measure(Trajectory.from_scenario(SQUATS, 41), "bar", 100.0, 41)[0])
    # The console log: each axis interpolated at every reading's time, inside all six's span.
    with (out / slow.name).open() as handle:
        log_rows = list(csv.DictReader(handle))
    assert log_rows[0]["t"] == "4056.510"  # the first time after which all six are known
    assert len(log_rows) == 58  # up to the last time at which all six are still known
    # AY is read at odd readings only (-1.5, then 0.5): at the even one between, halfway.
    assert [float(row["ay"]) for row in log_rows[:3]] == [-1.5, -0.5, 0.5]
    assert all(row["my"] == "" for row in log_rows)  # never read: left empty, not invented
    # Nothing of the source is copied into, or changed in, the source tree.
    assert not any(p.name == "labels.csv" for p in src.rglob("*"))

    evaluation = subprocess.run(
        [sys.executable, "-m", "sensorhub", "evaluate", "--recordings", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)
    scored = [entry for entry in report["files"] if entry["status"] == "scored"]
    assert [entry["file"] for entry in scored] == [squat.name]
    assert scored[0]["found_reps"] == 6
    assert report["all"]["set_aside"] == 4


@pytest.mark.parametrize("layout", ["nothing", "no_data2"])
def test_a_source_that_is_not_the_repository(tmp_path: Path, layout: str) -> None:
    src = tmp_path / "src"
    if layout == "no_data2":
        (src / "data" / "squat").mkdir(parents=True)
    result = run_tool(str(src), str(tmp_path / "out"))
    assert result.returncode == 2
    expected = "does not look like a checkout" if layout == "no_data2" else "is not a folder"
    assert expected in result.stderr
    assert "suzanmanasreh/wireless-imu-activity-tracking" in result.stderr
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_new_folder(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = run_tool(str(src), str(out))
    assert result.returncode == 2
    assert "is not an empty folder" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_milliseconds_become_seconds_exactly() -> None:
    seconds = tool()._seconds
    assert [seconds(ms) for ms in ("2733508", "5", "999", "1000", "123.5")] == [
        "2733.508",
        "0.005",
        "0.999",
        "1.000",
        "0.1235",
    ]
