"""The session pipeline on its own: settings checked once, roles, ticks, a missed neutral,
the athletes' states."""

from __future__ import annotations

import logging

import jsonschema
import numpy as np
import pytest

from firmware_protocol.virtual.imu_model import ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.analysis.neutral import NEUTRAL_HOLD_S
from sensorhub.errors import ConfigError, SensorhubError
from sensorhub.mqtt import schema
from sensorhub.pipeline import (
    TICK_S,
    AnalysisSettings,
    SessionPipeline,
    analysis_role,
    stored_calibration,
)
from sensorhub.records import AthleteStates, WallClock
from sensorhub.stream import SensorBatch

RATE_HZ = 200.0


def test_settings_are_checked_once_with_the_configurations_limits() -> None:
    assert AnalysisSettings("hip_thrust").set_gap_s == 45.0
    for bad, named in (
        ({"exercise": "curl"}, "exercise"),
        ({"exercise": "squat", "set_gap_s": 2.0}, "set_gap_s"),
        ({"exercise": "squat", "velocity_loss_alert_pct": 0.0}, "velocity_loss_alert_pct"),
        ({"exercise": "squat", "load_kg": -5.0}, "load_kg"),
        ({"exercise": "squat", "load_kg": float("nan")}, "load_kg"),
        ({"exercise": "squat", "live_rate_hz": 0.0}, "live_rate_hz"),
    ):
        with pytest.raises(ConfigError, match=named) as raised:
            AnalysisSettings(**bad)  # type: ignore[arg-type]
        assert isinstance(raised.value, SensorhubError)


def test_settings_read_and_write_what_a_session_stores() -> None:
    stored = {"exercise": "deadlift", "load_kg": None, "set_gap_s": 30.0}
    settings = AnalysisSettings.from_stored(stored, live_rate_hz=5.0)
    assert settings == AnalysisSettings("deadlift", set_gap_s=30.0, live_rate_hz=5.0)
    assert AnalysisSettings.from_stored(settings.stored()) == AnalysisSettings(
        "deadlift", set_gap_s=30.0
    )


def test_a_sensor_has_one_role_in_the_analysis() -> None:
    assert analysis_role("bar_velocity", "bar") == "bar_velocity"
    assert analysis_role("imu", "bar") == "bar"
    assert analysis_role("imu", "pelvis") == "pelvis"
    assert stored_calibration(None) is None
    assert stored_calibration({"tilt_axis_sensor": [0, 1, 0]}) is None  # no neutral: none
    with pytest.raises(ValueError, match="gravity"):
        stored_calibration({"neutral_gravity_sensor": [0.0, 0.0, 0.0]})


def pelvis_batches() -> list[SensorBatch]:
    trajectory = Trajectory.from_scenario(Scenario.preset("hip_thrust"), 3)
    rng = np.random.default_rng(3)
    simulator = ImuSimulator(trajectory, "pelvis", mounting=random_mounting(rng), rng=rng)
    t = np.arange(0.0, 40.0, 1.0 / RATE_HZ)
    accel, gyro = simulator.measure_si(t, odr_hz=RATE_HZ)
    return [
        SensorBatch(
            "AA:BB:CC:DD:EE:01", t[i : i + 20], accel=accel[i : i + 20], gyro=gyro[i : i + 20]
        )
        for i in range(0, len(t), 20)
    ]


def test_a_pelvis_away_while_neutral_was_held_is_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = pelvis_batches()
    pipeline = SessionPipeline(WallClock(offset_s=1000.0), session_id=7)
    settings = AnalysisSettings("hip_thrust")
    # Neutral was to be held over 0.5-3.5 s; the pelvis's data only begins at 4 s.
    pipeline.add_athlete("Ada", settings, {"pelvis": RATE_HZ}, neutral_from=0.0)
    late = [b for b in batches if b.t[0] >= 4.0]
    with caplog.at_level(logging.WARNING, logger="sensorhub.pipeline"):
        assert pipeline.feed("Ada", "pelvis", late[0]) == []
    assert f"hold neutral for {NEUTRAL_HOLD_S:g} s now" in caplog.text
    window = pipeline.analyzers["Ada"].neutral_window
    assert window is not None
    assert window[0] == pytest.approx(float(late[0].t[-1]) + 0.5)
    records = [r for b in late[1:] for r in pipeline.feed("Ada", "pelvis", b)]
    tilts = [r for r in records if r["type"] == "tilt"]
    assert tilts  # tilt once the new window has passed
    assert all(r["session_id"] == 7 for r in records)
    assert all(1004.0 < r["t"] <= 1040.0 for r in tilts)  # stamped by the session's clock


def test_a_pelvis_without_calibration_needs_a_neutral_time() -> None:
    pipeline = SessionPipeline(WallClock())
    with pytest.raises(ValueError, match="neutral_from"):
        pipeline.add_athlete("Ada", AnalysisSettings("hip_thrust"), {"pelvis": RATE_HZ})


def test_time_passes_every_tick_and_a_restarted_athlete_is_finished_first() -> None:
    pipeline = SessionPipeline(WallClock())
    pipeline.add_athlete("Ada", AnalysisSettings("squat"), {"bar": RATE_HZ})
    assert pipeline.tick_due(10.0)
    pipeline.tick_all(10.0)
    assert not pipeline.tick_due(10.0 + TICK_S / 2)
    assert pipeline.tick_due(10.0 + TICK_S)
    first = pipeline.analyzers["Ada"]
    pipeline.add_athlete(
        "Ada", AnalysisSettings("squat"), {"bar": RATE_HZ, "pelvis": RATE_HZ}, neutral_from=0.0
    )
    assert pipeline.analyzers["Ada"] is not first
    assert pipeline.flush() == []
    assert pipeline.analyzers == {}


def test_an_athletes_state_follows_their_records() -> None:
    states = AthleteStates()
    assert states.update({"type": "velocity", "athlete": "Ada", "t": 1.0}) is None
    assert states.update({"type": "session", "event": "started"}) is None
    tilt = states.update({"type": "tilt", "athlete": "Ada", "t": 1.0, "ts": "x", "tilt_deg": -3.0})
    assert tilt is not None
    assert (tilt["type"], tilt["tilt_deg"], tilt["set_index"], tilt["reps_in_set"]) == (
        "athlete_state",
        -3.0,
        None,
        0,
    )
    rep = {"type": "rep", "athlete": "Ada", "t_end": 2.0, "set_index": 1, "rep_in_set": 2}
    state = states.update({**rep, "mcv_mps": 0.5, "velocity_loss_pct": 12.0, "session_id": 4})
    assert state is not None
    assert (state["last_mcv_mps"], state["velocity_loss_pct"], state["session_id"]) == (
        0.5,
        12.0,
        4,
    )
    assert state["tilt_deg"] == -3.0  # kept from before
    assert state["t"] == 2.0
    # The first rep of the next set carries no loss yet: the last set's is not its own.
    state = states.update({**rep, "set_index": 2, "rep_in_set": 1, "mcv_mps": 0.6})
    assert state is not None
    assert (state["set_index"], state["velocity_loss_pct"]) == (2, None)
    done = states.update(
        {"type": "set", "athlete": "Ada", "t_end": 9.0, "set_index": 2, "rep_count": 5}
        | {"last_mcv_mps": 0.4, "velocity_loss_pct": 30.0}
    )
    assert done is not None
    assert (done["reps_in_set"], done["velocity_loss_pct"]) == (5, 30.0)
    validate_state = schema("athlete_state")
    jsonschema.validate({**done, "ts": "2026-12-06T00:00:00.000Z"}, validate_state)


def test_the_pipeline_follows_each_record_that_changes_a_state_with_it() -> None:
    pipeline = SessionPipeline(WallClock(), session_id=3)
    pipeline.add_athlete(
        "Ada", AnalysisSettings("hip_thrust"), {"pelvis": RATE_HZ}, neutral_from=0.0
    )
    records = [r for b in pelvis_batches() for r in pipeline.feed("Ada", "pelvis", b)]
    for i, record in enumerate(records):
        if record["type"] in {"tilt", "rep", "set"}:
            state = records[i + 1]
            assert state["type"] == "athlete_state"
            assert state["session_id"] == 3
    assert any(r["type"] == "athlete_state" for r in records)
