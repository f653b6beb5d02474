"""The evaluation corpora: the real one as untidy as real sessions, the clean one as it was."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from firmware_protocol.virtual.imu_model import IMU_PARTS, MPU6050
from firmware_protocol.virtual.motion import Trajectory
from sensorhub.analysis.evaluate import (
    CLEAN_CAPTURE,
    LIVE_MIN_RATE_HZ,
    Capture,
    CorpusItem,
    _imu,
    corpus,
    evaluate,
)


def test_corpora_are_the_same_for_the_same_seed() -> None:
    for kind in ("real", "clean"):
        assert corpus(6, seed=5, kind=kind) == corpus(6, seed=5, kind=kind)  # type: ignore[arg-type]
        assert corpus(6, seed=5, kind=kind) != corpus(6, seed=6, kind=kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="corpora: real, clean"):
        corpus(2, kind="tidy")  # type: ignore[arg-type]


def test_the_clean_corpus_is_the_one_first_built() -> None:
    items = corpus(8, seed=5, kind="clean")
    assert all(item.lifter is None and item.capture is None for item in items)
    assert not any(p.touch_and_go for item in items for p in item.scenario.sets)


def test_the_real_corpus_mixes_lifters_parts_rates_and_styles() -> None:
    items = corpus(40, seed=5)
    assert all(item.lifter is not None and item.capture is not None for item in items)
    captures = [item.capture for item in items if item.capture is not None]
    assert {c.part.name for c in captures} == {p.name for p in IMU_PARTS}
    rates = Counter(c.rate_hz for c in captures)
    assert min(rates) == 12.5
    assert max(rates) <= 208.0
    assert len(rates) >= 5
    assert all(c.rate_hz in c.part.odr_hz for c in captures)
    assert any(
        c.part is MPU6050 and (c.accel_range_g, c.gyro_range_dps) == (2, 250) for c in captures
    )
    assert all(c.link.stamps == "arrival" and c.link.loss > 0 for c in captures)
    tremor = [item.lifter.tremor_mps2 for item in items if item.lifter is not None]
    assert max(tremor) > 2 * min(tremor)  # calm to shaky
    for exercise in ("squat", "deadlift"):
        plans = [p for i in items if i.exercise == exercise for p in i.scenario.sets]
        share = sum(p.touch_and_go for p in plans) / len(plans)
        assert 0.2 < share < 0.7
    assert not any(p.touch_and_go for i in items if "hip" in i.exercise for p in i.scenario.sets)


def small_item(capture: Capture) -> CorpusItem:
    item = next(i for i in corpus(2, seed=5) if i.exercise == "hip_thrust")
    return replace(item, capture=capture)


def test_a_recording_is_made_even_and_a_live_stream_keeps_its_gaps() -> None:
    real = next(i.capture for i in corpus(20, seed=5) if i.capture and i.capture.rate_hz == 12.5)
    assert real is not None
    item = small_item(real)
    traj = Trajectory.from_scenario(item.scenario, item.seed, lifter=item.lifter)
    recording = _imu(traj, "bar", real, 12.5, np.random.default_rng(1), live=False)
    # A 12.5 Hz arrival-stamped recording comes out even, interpolated up to 50 Hz.
    assert recording.rate_hz == pytest.approx(50.0, rel=0.02)
    assert np.diff(recording.t).max() == pytest.approx(1 / recording.rate_hz, rel=1e-6)
    live = _imu(traj, "bar", real, LIVE_MIN_RATE_HZ, np.random.default_rng(1), live=True)
    steps = np.diff(live.t)
    assert live.rate_hz == LIVE_MIN_RATE_HZ
    assert steps.min() > 0.9 / live.rate_hz  # the sensor's own clock: no jitter
    assert steps.max() > 1.5 / live.rate_hz  # lost notifications stay gaps
    clean = _imu(traj, "bar", CLEAN_CAPTURE, 200.0, np.random.default_rng(1), live=False)
    assert np.array_equal(clean.t, np.arange(0.0, traj.duration_s, 1 / 200.0))


def test_a_rate_out_of_range_is_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="rate_hz = 0"):
        evaluate(1, rate_hz=0.0)
