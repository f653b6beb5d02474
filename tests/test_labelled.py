"""Labelled recordings: the labels file, good and bad, and evaluate --recordings end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware_protocol.virtual.motion import Trajectory
from sensorhub.analysis.labelled import (
    Label,
    LabelError,
    evaluate_recordings,
    format_report,
    read_labels,
)
from sensorhub.errors import SensorhubError
from tests.test_analysis_cli import SQUATS, measure, write_model_csv

HEADER = "file,role,exercise,reps"


def folder(tmp_path: Path, labels: str, files: tuple[str, ...] = ("a.csv", "b.csv")) -> Path:
    for name in files:
        (tmp_path / name).write_text("t,ax,ay,az,gx,gy,gz\n")
    (tmp_path / "labels.csv").write_text(labels)
    return tmp_path


def test_a_labels_file_written_by_hand(tmp_path: Path) -> None:
    text = """\
# Squats on the transducer, 12 May.
  # indented comments too

note,file,role,exercise,reps,mcv_mps,peak_velocity_mps,rom_m,accel_unit,gyro_unit,set_aside
"belt on, 100 kg",a.csv,bar,squat,3,0.61; 0.58;0.52,1.1;1.04;0.97,,g,deg/s,
,b.csv,pelvis,hip_thrust,0
,sub/c.csv,bar,romanian_deadlift,,,,,,,phone in the pocket
"""
    (tmp_path / "sub").mkdir()
    labels = read_labels(folder(tmp_path, text, ("a.csv", "b.csv", "sub/c.csv")))
    assert [label.name for label in labels] == ["a.csv", "b.csv", "sub/c.csv"]
    first, second, third = labels
    assert first == Label(
        path=tmp_path / "a.csv",
        name="a.csv",
        line=5,
        role="bar",
        exercise="squat",
        reps=3,
        accel_unit="g",
        gyro_unit="deg/s",
        mcv_mps=(0.61, 0.58, 0.52),
        peak_velocity_mps=(1.1, 1.04, 0.97),
        note="belt on, 100 kg",
    )
    assert (second.role, second.reps, second.accel_unit, second.gyro_unit) == (
        "pelvis",
        0,
        "m/s2",
        "rad/s",
    )
    assert second.mcv_mps == second.rom_m == ()
    assert (third.reps, third.set_aside, third.line) == (None, "phone in the pocket", 7)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (f"{HEADER},colour\na.csv,bar,squat,3,red\n", 1, "unknown column 'colour'"),
        ("file,role,reps\na.csv,bar,3\n", 1, "lacks column(s) exercise"),
        (f"{HEADER},note,note\n", 1, "'note' appears twice"),
        (f"{HEADER}\na.csv,bar,squat,3\nmissing.csv,bar,squat,3\n", 3, "'missing.csv' is not in"),
        (f"{HEADER}\na.csv,bar,squat,10.5\n", 2, "'10.5' is not a whole number"),
        (f"{HEADER}\na.csv,bar,squat,-1\n", 2, "'-1' is not a whole number"),
        (f"{HEADER}\na.csv,bar,squat,\n", 2, "reps is empty"),
        (f"{HEADER}\n# ok\na.csv,bar,bench_press,3\n", 3, "exercise 'bench_press' unknown"),
        (f"{HEADER}\na.csv,wrist,squat,3\n", 2, "role 'wrist' unknown"),
        (f"{HEADER},accel_unit\na.csv,bar,squat,3,m/s^2\n", 2, "accel_unit 'm/s^2': one of"),
        (f"{HEADER},gyro_unit\na.csv,bar,squat,3,dps\n", 2, "gyro_unit 'dps': one of"),
        (f"{HEADER},mcv_mps\na.csv,bar,squat,3,0.5;0.4\n", 2, "has 2 value(s) but reps is 3"),
        (f"{HEADER},rom_m\na.csv,bar,squat,2,0.5;x\n", 2, "rom_m value 2 ('x') is not a number"),
        (f"{HEADER},mcv_mps\na.csv,bar,squat,1,-0.5\n", 2, "must be positive"),
        (f"{HEADER}\na.csv,bar,squat,3,extra\n", 2, "5 cells, but the header names 4"),
    ],
)
def test_bad_labels_name_the_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    with pytest.raises(LabelError) as caught:
        read_labels(folder(tmp_path, text))
    error = str(caught.value)
    assert error.startswith(f"{tmp_path / 'labels.csv'}, line {line}: "), error
    assert message in error
    assert isinstance(caught.value, SensorhubError)
    assert isinstance(caught.value, ValueError)


def test_a_duplicate_names_both_lines(tmp_path: Path) -> None:
    text = f"{HEADER}\na.csv,bar,squat,3\n\nb.csv,bar,squat,3\n./a.csv,bar,squat,2\n"
    with pytest.raises(LabelError, match=r"line 5: \./a\.csv is listed already, on line 2"):
        read_labels(folder(tmp_path, text))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "has no labels.csv"),
        ("# nothing yet\n", "no header line"),
        (f"{HEADER}\n# none\n", "lists no recording"),
    ],
)
def test_a_folder_without_usable_labels(tmp_path: Path, labels: str | None, message: str) -> None:
    if labels is not None:
        (tmp_path / "labels.csv").write_text(labels)
    with pytest.raises(LabelError, match=message):
        read_labels(tmp_path)
    with pytest.raises(LabelError, match="is not a folder"):
        read_labels(tmp_path / "nope")


def write_g_deg_csv(path: Path, seed: int) -> Trajectory:
    """The short squat scenario as a phone app might log it: g, °/s."""
    traj = Trajectory.from_scenario(SQUATS, seed)
    t, accel, gyro = measure(traj, "bar", 100.0, seed)
    table = np.column_stack([t, accel / 9.80665, np.degrees(gyro)])
    lines = ["t,ax,ay,az,gx,gy,gz", *(",".join(f"{v:.5f}" for v in row) for row in table)]
    path.write_text("\n".join(lines) + "\n")
    return traj


def test_evaluate_recordings_on_a_labelled_folder(tmp_path: Path) -> None:
    truth = write_model_csv(tmp_path / "squat.csv", SQUATS, "bar", 31)
    write_g_deg_csv(tmp_path / "squat_g.csv", 32)
    full = [rep for rep in truth.truth.reps if not rep.partial]
    mcv = ";".join(f"{rep.mcv_mps:.3f}" for rep in full)
    peak = ";".join(f"{rep.peak_velocity_mps:.3f}" for rep in full)
    ms = tmp_path / "in_ms.csv"
    t = np.arange(0, 20_000, 10.0)
    rows = [f"{ti:.0f},0,0,9.81,0,0,0" for ti in t]
    ms.write_text("t,ax,ay,az,gx,gy,gz\n" + "\n".join(rows) + "\n")
    (tmp_path / "warmup.csv").write_text("t,ax,ay,az,gx,gy,gz\n")
    (tmp_path / "labels.csv").write_text(
        "# two sets of three squats each, from the sensor models\n"
        "file,role,exercise,reps,mcv_mps,peak_velocity_mps,accel_unit,gyro_unit,set_aside,note\n"
        f"squat.csv,bar,squat,{len(full)},{mcv},{peak},,,,references from the models\n"
        f"squat_g.csv,bar,squat,{len(full) + 1},,,g,deg/s,,one rep too many on purpose\n"
        "in_ms.csv,bar,squat,3\n"
        "warmup.csv,bar,squat,,,,,,empty: the sensor was off\n"
    )
    command = [sys.executable, "-m", "sensorhub", "evaluate", "--recordings", str(tmp_path)]
    result = subprocess.run(
        [*command, "--workers", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # one file could not be analysed
    report = json.loads(result.stdout)
    files = {entry["file"]: entry for entry in report["files"]}
    assert list(files) == ["squat.csv", "squat_g.csv", "in_ms.csv", "warmup.csv"]  # label order
    exact, one_off = files["squat.csv"], files["squat_g.csv"]
    assert (exact["status"], exact["found_reps"], exact["rep_error"]) == ("scored", 6, 0)
    assert exact["sets_found"] == 2
    assert len(exact["mcv_errors_mps"]) == len(exact["peak_velocity_errors_mps"]) == 6
    assert max(abs(e) for e in exact["mcv_errors_mps"]) < 0.1
    assert exact["rom_errors_m"] is None  # no references given
    assert exact["note"] == "references from the models"
    assert (one_off["status"], one_off["rep_error"]) == ("scored", -1)
    assert one_off["mcv_errors_mps"] is None
    assert files["in_ms.csv"]["status"] == "failed"
    assert "look like milliseconds" in files["in_ms.csv"]["reason"]
    assert files["warmup.csv"]["status"] == "set_aside"
    assert files["warmup.csv"]["reason"] == "empty: the sensor was off"
    figures = report["all"]
    assert figures["files"] == 2
    assert figures["exact_set_rate"] == 0.5
    assert figures["within_one_rep_rate"] == 1.0
    assert (figures["expected_reps"], figures["found_reps"]) == (13, 12)
    assert figures["rep_count_mae"] == 0.5
    assert figures["rep_count_bias"] == -0.5
    assert figures["mcv_reps"] == 6
    assert figures["mcv_rmse_mps"] < 0.08
    assert (figures["set_aside"], figures["failed"]) == (1, 1)
    assert report["by_exercise"]["squat"] == figures
    # Progress: a line per file on stderr, the reason a file failed among them.
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 4
    assert any("in_ms.csv: failed" in line for line in progress)
    assert "1 file(s) could not be analysed" in result.stderr
    text = format_report(report)
    assert "sets counted exactly" in text
    assert "50.0 %" in text
    assert "set aside: empty: the sensor was off" in text
    assert "FAILED" in text


def test_evaluate_recordings_in_one_process(tmp_path: Path) -> None:
    (tmp_path / "off.csv").write_text("t,ax,ay,az,gx,gy,gz\n")
    (tmp_path / "labels.csv").write_text(f"{HEADER},set_aside\noff.csv,bar,squat,,sensor off\n")
    lines: list[str] = []
    report = evaluate_recordings(tmp_path, workers=1, progress=lines.append)
    assert lines == ["[1/1] off.csv: set aside: sensor off"]
    assert report["all"]["files"] == 0
    assert report["all"]["exact_set_rate"] is None
    assert "—" in format_report(report)
