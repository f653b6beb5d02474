"""Loading and regularising recordings, and scoring against truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sensorhub.analysis.recording import RecordingError, load_csv, regularise
from sensorhub.analysis.scoring import ExerciseScore, match_reps


def write_csv(path: Path, t: np.ndarray, accel: np.ndarray, gyro: np.ndarray) -> Path:
    lines = ["t,ax,ay,az,gx,gy,gz"]
    lines += [
        ",".join(f"{v:.6f}" for v in (ti, *a, *g)) for ti, a, g in zip(t, accel, gyro, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_units_duplicates_jitter_and_gaps(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0, 10, 0.01) + rng.uniform(-0.002, 0.002, 1000)
    t = np.delete(t, np.s_[300:330])  # a 0.3 s gap: interpolated
    t = np.delete(t, np.s_[600:800])  # a 2 s gap: cut
    accel_g = np.column_stack([np.zeros_like(t), np.zeros_like(t), np.ones_like(t)])
    gyro_dps = np.column_stack([np.sin(t), np.zeros_like(t), np.zeros_like(t)]) * 90
    order = np.r_[np.arange(len(t)), [5, 5, 17]]  # duplicated rows
    path = write_csv(tmp_path / "r.csv", t[order], accel_g[order], gyro_dps[order])
    recording = load_csv(path, accel_unit="g", gyro_unit="deg/s")
    assert recording.accel[0, 2] == pytest.approx(9.80665)
    segments = regularise(recording)
    assert len(segments) == 2
    first = segments[0]
    assert first.rate_hz == pytest.approx(100, rel=0.05)
    assert np.allclose(np.diff(first.t), 1 / first.rate_hz)
    assert np.allclose(first.gyro[:, 0], np.radians(90) * np.sin(first.t), atol=0.02)
    assert segments[1].t[0] > first.t[-1] + 1.5


def test_rates_from_10_hz_to_1_khz(tmp_path: Path) -> None:
    for rate in (10, 1000):
        t = np.arange(0, 5, 1 / rate)
        accel = np.tile([0, 0, 9.81], (len(t), 1))
        segments = regularise(load_csv(write_csv(tmp_path / f"{rate}.csv", t, accel, accel * 0)))
        assert 50 <= segments[0].rate_hz <= 400
        assert np.allclose(segments[0].accel[:, 2], 9.81)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("time,ax\n1,2\n", "lacks column"),
        ("t,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,x\n", "line 2"),
        ("t,ax,ay,az,gx,gy,gz\n" + "".join(f"{i},0,0,0,0,0,0\n" for i in range(20)), "1.0 Hz"),
    ],
)
def test_bad_recordings_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(RecordingError, match=message):
        regularise(load_csv(path))


def test_missing_file_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read"):
        load_csv(tmp_path / "nope.csv")


@dataclass(frozen=True)
class R:
    concentric_start: float
    concentric_end: float
    mcv_mps: float = 0.5
    peak_velocity_mps: float = 1.0
    rom_m: float = 0.2
    partial: bool = False

    @property
    def t_start(self) -> float:
        return self.concentric_start - 1

    @property
    def t_end(self) -> float:
        return self.concentric_end + 1


def test_matching_and_figures() -> None:
    truth = [R(0, 1), R(3, 4), R(6, 7, partial=True)]
    detected = [R(0.1, 1.1, mcv_mps=0.52), R(6, 6.9, partial=True), R(10, 11)]
    assert match_reps(detected, truth) == [(0, 0), (1, 2)]
    score = ExerciseScore()
    score.add_reps(detected, truth)
    score.add_sets([(0, 8, 2)], [(0, 8, 2)])
    figures = score.figures()
    assert figures["rep_precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["rep_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["mcv_rmse_mps"] == pytest.approx(0.02)
    assert figures["exact_set_rate"] == 1.0
    assert figures["tilt_rmse_deg"] is None
    assert math.isclose(figures["rep_f1"], 2 / 3, abs_tol=1e-4)
