"""A recording's units told from its values: g vs m/s², °/s vs rad/s, ms vs s."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sensorhub.analysis.recording import RecordingError, UnitError, load_csv, regularise
from sensorhub.analysis.units import (
    accel_unit_problem,
    gyro_unit_problem,
    rest_magnitude,
    time_unit_problem,
    unit_problem,
)

G = 9.80665


def lifting(seconds: float = 20.0, rate: float = 100.0) -> tuple[np.ndarray, ...]:
    """A sensor that rests, then moves up and down while turning a little; SI units."""
    rng = np.random.default_rng(11)
    t = np.arange(0.0, seconds, 1.0 / rate)
    moving = t > 4.0
    lift = np.where(moving, 3.0 * np.sin(2 * np.pi * 0.4 * t), 0.0)
    accel = np.column_stack([np.zeros_like(t), np.zeros_like(t), G + lift])
    accel += rng.normal(0, 0.05, accel.shape)
    gyro = np.column_stack([np.where(moving, 1.5 * np.cos(2 * np.pi * 0.4 * t), 0.0)] * 3)
    gyro += rng.normal(0, 0.01, gyro.shape)
    return t, accel, gyro


def write_csv(path: Path, t: np.ndarray, accel: np.ndarray, gyro: np.ndarray) -> Path:
    rows = np.column_stack([t, accel, gyro])
    lines = ["t,ax,ay,az,gx,gy,gz", *(",".join(f"{v:.6f}" for v in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_recording_in_si_units_passes() -> None:
    t, accel, gyro = lifting()
    assert unit_problem(t, accel, gyro, accel_unit="m/s2", gyro_unit="rad/s") is None
    assert unit_problem(t, accel / G, np.degrees(gyro), accel_unit="g", gyro_unit="deg/s") is None
    assert rest_magnitude(accel, gyro) == pytest.approx(G, abs=0.05)


def test_g_given_as_m_s2_and_the_reverse() -> None:
    _, accel, gyro = lifting()
    problem = accel_unit_problem(accel / G, gyro, accel_unit="m/s2")
    assert problem is not None
    assert "reads 1 at rest" in problem
    assert "in g, not m/s²" in problem
    assert "--accel-unit" in problem
    reverse = accel_unit_problem(accel, gyro, accel_unit="g")
    assert reverse is not None
    assert "in m/s², not g" in reverse


@pytest.mark.parametrize("scale", [16384 / G, 0.0])
def test_an_accelerometer_in_neither_unit(scale: float) -> None:
    # Raw counts of a ±2 g sensor, or "linear acceleration" with gravity taken out.
    _, accel, gyro = lifting()
    values = accel * scale if scale else accel - [0, 0, G]
    problem = accel_unit_problem(values, gyro, accel_unit="m/s2")
    assert problem is not None
    assert "near neither" in problem


def test_deg_s_given_as_rad_s() -> None:
    gyro = lifting()[2]
    problem = gyro_unit_problem(np.degrees(gyro), gyro_unit="rad/s")
    assert problem is not None
    assert "look like °/s" in problem
    assert "--gyro-unit" in problem
    assert gyro_unit_problem(gyro, gyro_unit="rad/s") is None
    # A sensor that hardly turns cannot tell its unit: nothing is guessed.
    assert gyro_unit_problem(gyro * 0.01, gyro_unit="rad/s") is None


@pytest.mark.parametrize(
    ("times", "unit"),
    [
        (np.arange(0, 20_000, 10.0), "milliseconds"),  # 100 Hz
        # Bursts as BLE delivers them: 4 ms apart, then 20 ms of nothing (board clock).
        (np.cumsum(np.tile([4.0, 4.0, 4.0, 20.0], 500)) + 2_733_508, "milliseconds"),
        (np.arange(0, 20e6, 5000.0), "microseconds"),  # 200 Hz
    ],
)
def test_times_not_in_seconds(times: np.ndarray, unit: str) -> None:
    problem = time_unit_problem(times)
    assert problem is not None
    assert f"look like {unit}" in problem


def test_times_in_seconds_pass_even_when_too_slow() -> None:
    # 1.7 Hz in seconds is too slow to analyse, which regularise says; it is no ms clock.
    assert time_unit_problem(np.arange(0, 60, 0.6)) is None
    assert time_unit_problem(np.arange(0, 10, 0.001)) is None


def test_milliseconds_are_said_before_the_accelerometer_is_blamed(tmp_path: Path) -> None:
    t, accel, gyro = lifting()
    path = write_csv(tmp_path / "ms.csv", t * 1000, accel / G, gyro)
    with pytest.raises(UnitError, match="look like milliseconds") as caught:
        load_csv(path)
    assert "accelerometer" not in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("accel_scale", "gyro_scale", "kwargs", "message"),
    [
        (1 / G, 1.0, {}, "in g, not m/s²"),
        (1.0, 180 / np.pi, {}, "look like °/s"),
        (1.0, 1.0, {"accel_unit": "g"}, "in m/s², not g"),
    ],
)
def test_load_csv_names_the_file_and_the_unit(
    tmp_path: Path, accel_scale: float, gyro_scale: float, kwargs: dict[str, str], message: str
) -> None:
    t, accel, gyro = lifting()
    path = write_csv(tmp_path / "r.csv", t, accel * accel_scale, gyro * gyro_scale)
    with pytest.raises(UnitError, match=message) as caught:
        load_csv(path, **kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, RecordingError)
    assert str(caught.value).startswith(str(path))


def test_load_csv_takes_the_units_it_is_told(tmp_path: Path) -> None:
    t, accel, gyro = lifting()
    path = write_csv(tmp_path / "r.csv", t, accel / G, np.degrees(gyro))
    recording = load_csv(path, accel_unit="g", gyro_unit="deg/s")
    assert np.allclose(recording.accel, accel, atol=1e-5)
    assert regularise(recording)[0].rate_hz == pytest.approx(100, rel=0.01)


def test_analyze_says_which_unit_and_how_to_fix_it(tmp_path: Path) -> None:
    t, accel, gyro = lifting()
    path = write_csv(tmp_path / "in_g.csv", t, accel / G, gyro)
    command = [sys.executable, "-m", "sensorhub", "analyze", str(path)]
    result = subprocess.run(
        [*command, "--role", "bar", "--exercise", "squat"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "in g, not m/s²" in result.stderr
    assert "--accel-unit" in result.stderr
    assert "Traceback" not in result.stderr
