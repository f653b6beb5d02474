"""One recording of one sensor, analysed: the path ``analyze`` and ``evaluate --recordings`` share.

The CSV is loaded with its units checked (:func:`~sensorhub.analysis.recording.load_csv`)
and cut into evenly sampled segments at its long gaps
(:func:`~sensorhub.analysis.recording.regularise`). Each segment is fed, 50 ms at a time
as a hub feeds it, to the :class:`~sensorhub.analysis.athlete.AthleteAnalyzer` the live
service runs: reps, their velocity figures and their pelvic tilt are its
:class:`~sensorhub.analysis.events.RepCompleted` events, and the tilt trace is the one
the analyzer measured those reps on, taken every 0.1 s (the live tilt stream's rate).
Sets are grouped over the whole recording by the service's set tracker
(:func:`~sensorhub.analysis.sets.group_sets`), so a drop-out of a second or two inside a
set does not split it in two.

Pelvis: tilt is measured from a neutral pose. The first segment takes it from its first
still second (:func:`~sensorhub.analysis.recording.still_window`); a later segment goes on
from that neutral and from the mediolateral axis learned so far (the sensor is still
clipped on the same way), as a live session goes on from what pairing stored.

A recording in which no full rep is found says why
(:attr:`RecordingAnalysis.no_reps_reason`): the sensor never moved, or the movement was
too small or too large for a rep of the exercise, or it had no rep's shape.

Times are seconds on the recording's clock (``start_s`` is its first sample); SI units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.athlete import AthleteAnalyzer
from sensorhub.analysis.events import RepCompleted
from sensorhub.analysis.exercises import EXERCISES
from sensorhub.analysis.recording import (
    RecordingError,
    Segment,
    load_csv,
    regularise,
    still_window,
)
from sensorhub.analysis.reps import EXERCISE_LIMITS, Rep
from sensorhub.analysis.sets import DEFAULT_SET_GAP_S, SetSummary, group_sets
from sensorhub.analysis.tilt import RepTilt, TiltCalibration
from sensorhub.analysis.units import AccelUnit, GyroUnit
from sensorhub.analysis.velocity import vertical_motion
from sensorhub.config import SET_GAP_S_LIMITS
from sensorhub.errors import ConfigError
from sensorhub.registry import ROLES, Role

__all__ = [
    "TILT_TRACE_RATE_HZ",
    "AnalysedRep",
    "RecordingAnalysis",
    "analyze_recording",
    "check_set_gap_s",
]

FloatArray = npt.NDArray[np.float64]
TILT_TRACE_RATE_HZ: Final = 10.0
"""The tilt trace comes at the live stream's rate: enough to plot, small in JSON."""
BATCH_S: Final = 0.05
"""Samples are fed in batches this long, as a hub gets them from a sensor."""
_STILL_RATE_RAD_S: Final = 0.2
_STILL_ACCEL_M_S2: Final = 0.5


@dataclass(frozen=True, slots=True)
class AnalysedRep:
    """One rep found: its set (1-based), its figures, and its tilt when from a pelvis sensor."""

    set_index: int
    rep: Rep
    tilt: RepTilt | None


@dataclass(frozen=True, slots=True)
class RecordingAnalysis:
    """What one recording holds: reps, sets and, from a pelvis sensor, the tilt trace.

    ``tilt_t`` (m,) s and ``tilt_deg`` (m,) degrees (positive = posterior) at
    :data:`TILT_TRACE_RATE_HZ`, empty for a bar sensor. ``no_reps_reason`` says why no
    full rep was found, and is None when one was.
    """

    path: Path
    role: Role
    exercise: str
    sample_rate_hz: float
    """The rate the analysis ran at (the recording's, brought into 50-400 Hz)."""
    segments: int
    start_s: float
    """The recording's first sample, s on its clock."""
    duration_s: float
    set_gap_s: float
    reps: tuple[AnalysedRep, ...]
    sets: tuple[SetSummary, ...]
    tilt_t: FloatArray
    tilt_deg: FloatArray
    no_reps_reason: str | None

    @property
    def full_reps(self) -> int:
        """Reps that reached lockout, over all sets (the count a person would give)."""
        return sum(summary.rep_count for summary in self.sets)


def check_set_gap_s(value: float) -> float:
    """Return ``value`` if the service takes it as its set gap (s); else raise ConfigError."""
    low, high = SET_GAP_S_LIMITS
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(
            f"set gap {value!r} s: allowed {low:g} to {high:g} s (the range of the "
            "service's [analysis] set_gap_s)"
        )
    return float(value)


def analyze_recording(
    path: Path,
    *,
    role: Role,
    exercise: str,
    accel_unit: AccelUnit = "m/s2",
    gyro_unit: GyroUnit = "rad/s",
    set_gap_s: float | None = None,
    load_kg: float | None = None,
) -> RecordingAnalysis:
    """Analyse a CSV recording of one IMU (columns ``t ax ay az gx gy gz``) as the service would.

    Raises :class:`~sensorhub.analysis.recording.RecordingError` for a file that cannot be
    analysed (unreadable, units its values contradict, too slow, no neutral pose for the
    pelvis) and :class:`~sensorhub.errors.ConfigError` for a bad argument.
    """
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: one of {', '.join(ROLES)}")
    if exercise not in EXERCISES:
        raise ConfigError(f"exercise {exercise!r}: one of {', '.join(EXERCISES)}")
    gap = DEFAULT_SET_GAP_S if set_gap_s is None else check_set_gap_s(set_gap_s)
    if load_kg is not None and not (math.isfinite(load_kg) and 0 <= load_kg <= 1000):
        raise ConfigError(f"load {load_kg!r} kg: allowed 0 to 1000 kg")
    segments = regularise(load_csv(path, accel_unit=accel_unit, gyro_unit=gyro_unit))
    found: list[tuple[Rep, RepTilt | None]] = []
    trace: list[tuple[FloatArray, FloatArray]] = []
    calibration: TiltCalibration | None = None
    for number, segment in enumerate(segments):
        neutral = None
        if role == "pelvis" and calibration is None:
            neutral = still_window(segment)
            if neutral is None:
                # Tilt is measured from the neutral pose; without one there is nothing to report.
                raise RecordingError(
                    f"{path}: the pelvis never lies still for a second from "
                    f"{segment.t[0] - segments[0].t[0]:.2f} s on, so there is no neutral pose "
                    "to measure tilt from; start the recording with the athlete holding still"
                )
        analyzer = AthleteAnalyzer(
            f"{path.name}#{number + 1}",
            exercise,
            rates={role: segment.rate_hz},
            load_kg=load_kg,
            set_gap_s=gap,
            neutral_window=neutral,
            tilt_calibration=calibration,
            keep_tilt_trace=role == "pelvis",
        )
        events = []
        step = max(1, round(segment.rate_hz * BATCH_S))
        for start in range(0, len(segment.t), step):
            window = slice(start, start + step)
            events += analyzer.feed_imu(
                role, segment.t[window], segment.accel[window], segment.gyro[window]
            )
        events += analyzer.flush()
        found += [(e.rep, e.tilt) for e in events if isinstance(e, RepCompleted)]
        if role == "pelvis":
            trace.append(_every(*analyzer.tilt_trace(), 1.0 / TILT_TRACE_RATE_HZ))
        if role == "pelvis" and neutral is not None:
            inside = (segment.t >= neutral[0]) & (segment.t <= neutral[1])
            calibration = TiltCalibration.from_gravity(
                segment.accel[inside].mean(axis=0), analyzer.learned_tilt_axis
            )
    sets = tuple(group_sets([rep for rep, _ in found], set_gap_s=gap))
    set_of = {id(rep): summary.index for summary in sets for rep in summary.reps}
    reps = tuple(AnalysedRep(set_of[id(rep)], rep, tilt) for rep, tilt in found)
    start_s = float(segments[0].t[0])
    full = sum(summary.rep_count for summary in sets)
    reason = None
    if full == 0:
        reason = (
            f"{len(reps)} partial rep(s) found (none reached lockout), no full one"
            if reps
            else _why_no_reps(segments, role, exercise)
        )
    return RecordingAnalysis(
        path=path,
        role=role,
        exercise=exercise,
        sample_rate_hz=segments[0].rate_hz,
        segments=len(segments),
        start_s=start_s,
        duration_s=float(segments[-1].t[-1]) - start_s,
        set_gap_s=gap,
        reps=reps,
        sets=sets,
        tilt_t=np.concatenate([t for t, _ in trace]) if trace else np.empty(0),
        tilt_deg=np.concatenate([deg for _, deg in trace]) if trace else np.empty(0),
        no_reps_reason=reason,
    )


def _every(t: FloatArray, values: FloatArray, period_s: float) -> tuple[FloatArray, FloatArray]:
    """The known samples nearest a grid of ``period_s`` (NaN, not yet known, left out)."""
    known = np.isfinite(values)
    t, values = t[known], values[known]
    if len(t) == 0:
        return t, values
    grid = np.arange(t[0], t[-1] + 0.5 * period_s, period_s)
    index = np.unique(np.clip(np.searchsorted(t, grid), 0, len(t) - 1))
    return t[index], values[index]


def _why_no_reps(segments: list[Segment], role: Role, exercise: str) -> str:
    """Why the analysis found no rep: the sensor lay still, or moved unlike a rep."""
    body = f"the {role}"
    # About each segment's median: a gyroscope's offset is no movement.
    turning = max(
        _spread(np.linalg.norm(s.gyro - np.median(s.gyro, axis=0), axis=1)) for s in segments
    )
    shaking = max(_spread(np.abs(_deviation(np.linalg.norm(s.accel, axis=1)))) for s in segments)
    if turning < _STILL_RATE_RAD_S and shaking < _STILL_ACCEL_M_S2:
        return (
            f"{body} hardly moves: it turns at under {_STILL_RATE_RAD_S:g} rad/s and its "
            f"acceleration stays within {_STILL_ACCEL_M_S2:g} m/s² of its resting value throughout"
        )
    largest, duration = 0.0, 0.0
    for segment in segments:
        motion = vertical_motion(segment.t, segment.accel, segment.gyro, segment.rate_hz)
        for travel, seconds in _strokes(motion.t, motion.velocity):
            if travel > largest:
                largest, duration = travel, seconds
    limits = EXERCISE_LIMITS[exercise]
    name = exercise.replace("_", " ")
    span = f"a {name} rep moves {limits.min_rom_m * 100:.0f}-{limits.max_rom_m * 100:.0f} cm"
    moved = f"{body} moves, but its largest single stroke up or down is {largest * 100:.1f} cm"
    if largest < limits.min_rom_m:
        return f"{moved}: too small for a rep ({span})"
    if largest > limits.max_rom_m:
        return f"{moved} over {duration:.1f} s: too large for a rep ({span})"
    first = "down" if limits.down_first else "up"
    return (
        f"{moved} over {duration:.1f} s, as large as a rep, but no movement has a rep's shape: "
        f"{first} first and back by about the same distance, concentric "
        f"{limits.min_concentric_s:g}-{limits.max_concentric_s:g} s "
        "(is it the exercise the recording holds?)"
    )


def _deviation(values: FloatArray) -> FloatArray:
    return values - np.median(values)


def _spread(values: FloatArray) -> float:
    """The 99th percentile: how far the values go, one outlier aside."""
    return float(np.percentile(values, 99.0)) if len(values) else 0.0


def _strokes(t: FloatArray, velocity: FloatArray) -> list[tuple[float, float]]:
    """(distance m, duration s) of each run of one sign of the vertical velocity."""
    if len(t) < 2:
        return []
    sign = np.sign(velocity)
    edges = np.flatnonzero(np.diff(sign) != 0) + 1
    out = []
    for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(t)], strict=True):
        if hi - lo < 2 or sign[lo] == 0:
            continue
        v, dt = velocity[lo:hi], np.diff(t[lo:hi])
        travel = abs(float(np.sum(0.5 * (v[1:] + v[:-1]) * dt)))
        out.append((travel, float(t[hi - 1] - t[lo])))
    return out
