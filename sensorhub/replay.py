"""Run a recorded session's raw frames through the analysis again.

A replay is the hub's own pipeline (:mod:`sensorhub.pipeline`) fed from the session
store instead of the radio. The stored frames are decoded exactly as the live link
decoded them, each sample keeps its stored hub time, time passes in the analysis as it
did on the hub (every :data:`~sensorhub.pipeline.TICK_S` of the stream), and the records
carry the session's wall-clock offset: the replay of a session sees what the hub saw and
stamps what it finds with the live times. Useful after an analysis improvement, or to
publish a session again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from firmware_protocol import (
    BAR_RATES_HZ,
    IMU_RATES_HZ,
    BarDataFrame,
    FirmwareProtocolError,
    ImuDataFrame,
    decode,
)
from sensorhub.analysis.athlete import Role
from sensorhub.analysis.tilt import TiltCalibration
from sensorhub.errors import SensorhubError, StateError
from sensorhub.pipeline import AnalysisSettings, SessionPipeline, analysis_role, stored_calibration
from sensorhub.records import Record, WallClock
from sensorhub.store.db import RawBatch, SessionStore
from sensorhub.stream import SensorBatch

__all__ = [
    "DEFAULT_KINDS",
    "RATE_FRAMES",
    "RecordSink",
    "ReplayPlan",
    "plan_replay",
    "replay_session",
]

RATE_FRAMES: Final = 256
"""Frames per sensor whose timestamps give its sample rate."""
NOMINAL_TOLERANCE: Final = 0.02
"""A measured rate this close to a configurable one is that one (clock drift is ppm)."""
DEFAULT_KINDS: Final = frozenset({"rep", "set", "alert"})

RecordSink = Callable[[Record], None]
"""Where replayed records can go besides the caller (a publisher, a printer)."""


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay runs: the pipeline, with an analyzer per athlete with sensors."""

    session_id: int
    pipeline: SessionPipeline

    @property
    def clock(self) -> WallClock:
        return self.pipeline.clock


def _stream_facts(
    store: SessionStore, session_id: int, addresses: set[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Sample rate (Hz) and first hub time (s) per sensor, from its first frames."""
    spacings: dict[str, list[float]] = {}
    first: dict[str, float] = {}
    done: set[str] = set()
    for batch in store.raw_batches(session_id):
        first.setdefault(batch.address, float(batch.t[0]))
        if batch.address in done or len(batch.t) < 2:
            continue
        spacing = spacings.setdefault(batch.address, [])
        spacing.append((float(batch.t[-1]) - float(batch.t[0])) / (len(batch.t) - 1))
        if len(spacing) >= RATE_FRAMES:
            done.add(batch.address)
            if done >= addresses:
                break
    rates = {}
    for address, spacing in spacings.items():
        period = float(np.median(spacing))
        if not period > 0:
            raise StateError(f"session {session_id}: sensor {address} has damaged timestamps")
        rates[address] = _nominal(1.0 / period)
    return rates, first


def _nominal(rate_hz: float) -> float:
    for nominal in sorted({*IMU_RATES_HZ, *BAR_RATES_HZ}):
        if abs(rate_hz - nominal) <= NOMINAL_TOLERANCE * nominal:
            return float(nominal)
    return rate_hz


def plan_replay(store: SessionStore, session_id: int) -> ReplayPlan:
    """Build the pipeline a session's settings and sensors call for.

    Each athlete's analysis gets the session's exercise, load and analysis settings, the
    roles of the sensors that recorded frames, and rates from their timestamps. A pelvis
    sensor's tilt starts from the neutral pose measured at pairing; a sensor paired
    without one takes the neutral pose from the first seconds of its stream, as the
    live hub asked the athlete to hold it.
    """
    info = store.session(session_id)
    addresses = {sensor["address"] for sensor in info["sensors"]}
    rates, first = _stream_facts(store, session_id, addresses)
    pipeline = SessionPipeline(WallClock(offset_s=info["clock_offset_s"]))
    for athlete in info["athletes"]:
        name = athlete["athlete"]
        sensors = [s for s in info["sensors"] if s["athlete"] == name and s["address"] in rates]
        if not sensors:
            continue
        roles: dict[Role, float] = {}
        calibration: TiltCalibration | None = None
        neutral_from: float | None = None
        for sensor in sensors:
            role = analysis_role(sensor["kind"], sensor["role"])
            roles.setdefault(role, rates[sensor["address"]])
            if role == "pelvis":
                calibration = _calibration(sensor["calibration"])
                if calibration is None:
                    neutral_from = first[sensor["address"]]
        try:
            settings = AnalysisSettings.from_stored(athlete)
        except SensorhubError as exc:
            raise StateError(f"session {session_id}: {name}'s stored settings: {exc}") from exc
        pipeline.add_athlete(
            name, settings, roles, calibration=calibration, neutral_from=neutral_from
        )
    return ReplayPlan(session_id, pipeline)


def _calibration(stored: dict[str, Any] | None) -> TiltCalibration | None:
    """The tilt calibration pairing stored, as the live hub builds it."""
    try:
        return stored_calibration(stored)
    except ValueError:
        return None  # a damaged calibration: the stream's first seconds will do


def replay_session(
    store: SessionStore,
    session_id: int,
    *,
    kinds: Collection[str] = DEFAULT_KINDS,
    sinks: Collection[RecordSink] = (),
) -> Iterator[Record]:
    """Yield the records the analysis finds in a stored session, as the hub would have.

    ``kinds`` picks the record types (``rep``, ``set``, ``alert``, also ``tilt`` and
    ``velocity`` for the live streams and ``athlete_state`` for each athlete's state as
    it changes); every record also goes to each of ``sinks``.
    """
    pipeline = plan_replay(store, session_id).pipeline
    for stored in store.raw_batches(session_id):
        if stored.athlete not in pipeline.analyzers:
            continue
        batch = _decoded(stored, session_id)
        role = analysis_role(stored.kind, stored.role)
        records = pipeline.feed(stored.athlete, role, batch)
        records += pipeline.tick_all(float(stored.t[-1]))
        yield from _emit(records, kinds, sinks)
    yield from _emit(pipeline.flush(), kinds, sinks)


def _decoded(stored: RawBatch, session_id: int) -> SensorBatch:
    """A stored frame as the live link handed it on: its samples at their hub times."""
    try:
        frame = decode(stored.frame)
    except FirmwareProtocolError as exc:
        raise StateError(
            f"session {session_id}: a stored frame of {stored.address} does not decode ({exc})"
        ) from exc
    if not isinstance(frame, ImuDataFrame | BarDataFrame) or frame.count != len(stored.t):
        raise StateError(
            f"session {session_id}: a stored frame of {stored.address} does not match its "
            "timestamps; the store is damaged"
        )
    if isinstance(frame, BarDataFrame):
        return SensorBatch(
            stored.address, stored.t, position=frame.position, velocity=frame.velocity
        )
    return SensorBatch(stored.address, stored.t, accel=frame.accel, gyro=frame.gyro)


def _emit(
    records: list[Record], kinds: Collection[str], sinks: Collection[RecordSink]
) -> Iterator[Record]:
    for record in records:
        if record["type"] in kinds:
            for sink in sinks:
                sink(record)
            yield record
