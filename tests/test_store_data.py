"""Sessions recorded the way the hub records them: real frames, real analysis, a real file.

The other store, export and CLI tests build on :func:`record_session`; the one test here
checks the recording itself is what those tests assume.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from firmware_protocol import ImuDataFrame, decode
from firmware_protocol.virtual.imu_model import ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.analysis.athlete import AthleteAnalyzer
from sensorhub.analysis.tilt import TiltCalibration
from sensorhub.records import WallClock, event_record
from sensorhub.registry import RegisteredSensor
from sensorhub.store import SessionStore
from sensorhub.stream import SensorBatch

RATE_HZ = 100.0
FRAME_SAMPLES = 10
HUB_T0 = 5000.0
"""Hub (monotonic) time of the first sample."""
CLOCK_OFFSET_S = 1_780_000_000.0
"""Unix minus monotonic: the session's wall clock."""
TICK_S = 0.5
"""The hub ticks its analyses twice a second."""
LOAD_KG = 80.0
BAR = "C0:FF:EE:00:00:01"
PELVIS = "C0:FF:EE:00:00:02"


@dataclass
class Recorded:
    """A recorded session and what the live analysis said about it."""

    path: Path
    session_id: int
    records: list[dict[str, Any]]
    truth_full_reps: int
    truth_sets: int
    batches: list[tuple[str, SensorBatch]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == kind]


def imu_frames(
    counts: np.ndarray, t: np.ndarray, rate_hz: float, samples: int = FRAME_SAMPLES
) -> list[tuple[bytes, np.ndarray]]:
    """Encode int16 counts (n, 6) as IMU_DATA frames; each with its samples' hub times."""
    interval_us = round(1e6 / rate_hz)
    out = []
    for k, start in enumerate(range(0, len(t), samples)):
        window = slice(start, start + samples)
        frame = ImuDataFrame(
            seq=k % 65536,
            timestamp_us=round(start * interval_us) % 2**32,
            interval_us=interval_us,
            samples=np.ascontiguousarray(counts[window], dtype="<i2"),
        )
        out.append((bytes(frame), t[window] + HUB_T0))
    return out


def sensors(neutral_gravity: list[float]) -> list[RegisteredSensor]:
    return [
        RegisteredSensor(BAR, "imu", "bar", "Ada", name="bar"),
        RegisteredSensor(
            PELVIS,
            "imu",
            "pelvis",
            "Ada",
            calibration={"neutral_gravity_sensor": neutral_gravity, "neutral_samples": 300},
        ),
    ]


def record_session(path: Path, *, seed: int = 41, note: str = "test session") -> Recorded:
    """Record the hip-thrust preset from a bar and a pelvis IMU into the store at ``path``."""
    scenario = Scenario.preset("hip_thrust")
    traj = Trajectory.from_scenario(scenario, seed)
    t = np.arange(0, traj.duration_s, 1 / RATE_HZ)
    streams = {}
    for i, body in enumerate(("bar", "pelvis")):
        rng = np.random.default_rng(seed + i)
        sim = ImuSimulator(traj, body, mounting=random_mounting(rng), rng=rng)  # type: ignore[arg-type]
        accel, gyro = sim.measure(t, accel_range_g=16, gyro_range_dps=2000, odr_hz=RATE_HZ)
        streams[body] = imu_frames(np.hstack([accel, gyro]), t, RATE_HZ)
    # What pairing measured: the pelvis accelerometer at rest in the neutral pose.
    still = [decode(data).accel for data, times in streams["pelvis"] if times[-1] < HUB_T0 + 2.5]  # type: ignore[union-attr]
    gravity = [round(float(v), 5) for v in np.concatenate(still).mean(axis=0)]
    bar, pelvis = sensors(gravity)
    analyzer = AthleteAnalyzer(
        "Ada",
        "hip_thrust",
        rates={"bar": RATE_HZ, "pelvis": RATE_HZ},
        load_kg=LOAD_KG,
        tilt_calibration=TiltCalibration.from_gravity(gravity),
    )
    clock = WallClock(offset_s=CLOCK_OFFSET_S)
    store = SessionStore(path)
    session_id = store.start_session(
        athletes={"Ada": {"exercise": "hip_thrust", "load_kg": LOAD_KG}},
        sensors=[bar, pelvis],
        clock_offset_s=CLOCK_OFFSET_S,
        note=note,
    )
    records: list[dict[str, Any]] = []
    batches: list[tuple[str, SensorBatch]] = []
    next_tick = -np.inf
    for (bar_data, bar_t), (pelvis_data, pelvis_t) in zip(
        streams["bar"], streams["pelvis"], strict=True
    ):
        for sensor, data, times in ((bar, bar_data, bar_t), (pelvis, pelvis_data, pelvis_t)):
            frame = decode(data)
            assert isinstance(frame, ImuDataFrame)
            batch = SensorBatch(
                sensor.address, times, accel=frame.accel, gyro=frame.gyro, frame=data
            )
            batches.append((sensor.role, batch))
            store.add_batch(session_id, sensor, batch)
            events = analyzer.feed_imu(sensor.role, batch.t, frame.accel, frame.gyro)
            if times[-1] >= next_tick:  # the hub ticks its analyses twice a second
                next_tick = float(times[-1]) + TICK_S
                events += analyzer.tick(float(times[-1]))
            for event in events:
                records.append(event_record(event, clock))
                store.add_record(session_id, records[-1])
    for event in analyzer.flush():
        records.append(event_record(event, clock))
        store.add_record(session_id, records[-1])
    store.end_session(session_id)
    store.close()
    return Recorded(
        path,
        session_id,
        [r for r in records if r["type"] in {"rep", "set", "alert"}],
        sum(1 for r in traj.truth.reps if not r.partial),
        len(traj.truth.sets),
        batches,
    )


_RECORDED: dict[int, Recorded] = {}


def recorded_copy(directory: Path, *, seed: int = 41) -> Recorded:
    """The session of ``seed``, recorded once per test run, in a store copied into ``directory``.

    ``directory`` becomes a state directory: the store is ``directory / "sessions.db"``.
    """
    if seed not in _RECORDED:
        origin = Path(tempfile.mkdtemp(prefix="sensorhub-recorded-"))
        atexit.register(shutil.rmtree, origin, ignore_errors=True)
        _RECORDED[seed] = record_session(origin / "sessions.db", seed=seed)
    recorded = _RECORDED[seed]
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(recorded.path, directory / "sessions.db")
    return replace(recorded, path=directory / "sessions.db")


def test_a_recorded_session_has_the_live_reps_and_sets(tmp_path: Path) -> None:
    recorded = recorded_copy(tmp_path)
    full = [r for r in recorded.of("rep") if not r["partial"]]
    assert len(full) == recorded.truth_full_reps
    assert len(recorded.of("set")) == recorded.truth_sets
    assert any(r["tilt_verdict"] for r in full)  # the pelvis sensor gave tilt
