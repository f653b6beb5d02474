"""Run a recorded session's raw frames through the analysis again.

The stored frames are decoded exactly as the live link decoded them, each sample keeps
its stored hub time, and the records carry the session's wall-clock offset: the replay
of a session sees what the hub saw and stamps what it finds with the live times. Useful
after an analysis improvement, or to publish a session again.
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
from sensorhub.analysis.athlete import AthleteAnalyzer, Role
from sensorhub.analysis.tilt import TiltCalibration
from sensorhub.errors import StateError
from sensorhub.records import Record, WallClock, event_record
from sensorhub.store.db import RawBatch, SessionStore

__all__ = ["RATE_FRAMES", "ReplayPlan", "analysis_role", "plan_replay", "replay_session"]

RATE_FRAMES: Final = 256
"""Frames per sensor whose timestamps give its sample rate."""
TICK_S: Final = 0.5
"""Stream time between the analysis's ticks, as often as the live hub ticks it."""
NOMINAL_TOLERANCE: Final = 0.02
"""A measured rate this close to a configurable one is that one (clock drift is ppm)."""
NEUTRAL_DELAY_S: Final = 0.5
NEUTRAL_HOLD_S: Final = 3.0
"""Without a neutral pose from pairing, the athlete holds it for this long at the start."""
DEFAULT_KINDS: Final = frozenset({"rep", "set", "alert"})

RecordSink = Callable[[Record], None]
"""Where replayed records can go besides the caller (a publisher, a printer)."""


def analysis_role(kind: str, role: str) -> Role:
    """The analysis's name for a sensor: ``bar_velocity`` for a transducer, else its role."""
    return "bar_velocity" if kind == "bar_velocity" else role  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay runs: one analyzer per athlete with sensors, and the clock."""

    session_id: int
    clock: WallClock
    analyzers: dict[str, AthleteAnalyzer]


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
    """Build the analyzers a session's settings and sensors call for.

    Each athlete's analyzer gets the session's exercise, load and analysis settings, the
    roles of the sensors that recorded frames, and rates from their timestamps. A pelvis
    sensor's tilt starts from the neutral pose measured at pairing; a sensor paired
    without one takes the neutral pose from the first seconds of its stream.
    """
    info = store.session(session_id)
    addresses = {sensor["address"] for sensor in info["sensors"]}
    rates, first = _stream_facts(store, session_id, addresses)
    analyzers: dict[str, AthleteAnalyzer] = {}
    for athlete in info["athletes"]:
        name = athlete["athlete"]
        sensors = [s for s in info["sensors"] if s["athlete"] == name and s["address"] in rates]
        if not sensors:
            continue
        roles: dict[Role, float] = {}
        calibration: TiltCalibration | None = None
        neutral: tuple[float, float] | None = None
        for sensor in sensors:
            role = analysis_role(sensor["kind"], sensor["role"])
            roles.setdefault(role, rates[sensor["address"]])
            if role == "pelvis":
                calibration = _calibration(sensor["calibration"])
                if calibration is None:
                    # As the live hub does: neutral is held from half a second in.
                    start = first[sensor["address"]] + NEUTRAL_DELAY_S
                    neutral = (start, start + NEUTRAL_HOLD_S)
        settings: dict[str, Any] = {
            key: athlete[key]
            for key in ("set_gap_s", "velocity_loss_alert_pct")
            if athlete[key] is not None
        }
        analyzers[name] = AthleteAnalyzer(
            name,
            athlete["exercise"],
            rates=roles,
            load_kg=athlete["load_kg"],
            neutral_window=neutral,
            tilt_calibration=calibration,
            **settings,
        )
    return ReplayPlan(session_id, WallClock(offset_s=info["clock_offset_s"]), analyzers)


def _calibration(stored: dict[str, Any] | None) -> TiltCalibration | None:
    """The tilt calibration pairing stored, as the live hub builds it."""
    gravity = (stored or {}).get("neutral_gravity_sensor")
    if gravity is None:
        return None
    try:
        return TiltCalibration.from_gravity(gravity, (stored or {}).get("tilt_axis_sensor"))
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
    ``velocity`` for the live streams); every record also goes to each of ``sinks``.
    """
    plan = plan_replay(store, session_id)
    next_tick = -np.inf
    for batch in store.raw_batches(session_id):
        analyzer = plan.analyzers.get(batch.athlete)
        if analyzer is None:
            continue
        events = _feed(analyzer, batch, session_id)
        now = float(batch.t[-1])
        if now >= next_tick:
            next_tick = now + TICK_S
            for each in plan.analyzers.values():
                events += each.tick(now)
        yield from _emit(events, plan.clock, kinds, sinks)
    for analyzer in plan.analyzers.values():
        yield from _emit(analyzer.flush(), plan.clock, kinds, sinks)


def _feed(analyzer: AthleteAnalyzer, batch: RawBatch, session_id: int) -> list[Any]:
    try:
        frame = decode(batch.frame)
    except FirmwareProtocolError as exc:
        raise StateError(
            f"session {session_id}: a stored frame of {batch.address} does not decode ({exc})"
        ) from exc
    if not isinstance(frame, ImuDataFrame | BarDataFrame) or frame.count != len(batch.t):
        raise StateError(
            f"session {session_id}: a stored frame of {batch.address} does not match its "
            "timestamps; the store is damaged"
        )
    if isinstance(frame, BarDataFrame):
        return list(analyzer.feed_transducer(batch.t, frame.position, frame.velocity))
    role = analysis_role(batch.kind, batch.role)
    return list(analyzer.feed_imu(role, batch.t, frame.accel, frame.gyro))


def _emit(
    events: list[Any], clock: WallClock, kinds: Collection[str], sinks: Collection[RecordSink]
) -> Iterator[Record]:
    for event in events:
        record = event_record(event, clock)
        if record["type"] in kinds:
            for sink in sinks:
                sink(record)
            yield record
