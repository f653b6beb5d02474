"""Recordings of one sensor: loading CSV files and making them fit for analysis.

Real BLE recordings are untidy: rows repeat, timestamps jitter, the rate is whatever
the app got, and the link drops for a while. :func:`regularise` turns such a recording
into segments of evenly spaced samples: rows sorted, exact duplicates dropped, rows
that share a timestamp averaged, short gaps interpolated, long gaps cut (the analysis
restarts after them rather than inventing motion).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.units import AccelUnit, GyroUnit, unit_problem
from sensorhub.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
COLUMNS: Final = ("t", "ax", "ay", "az", "gx", "gy", "gz")
G: Final = 9.80665
MIN_RATE_HZ: Final = 10.0
MAX_RATE_HZ: Final = 1000.0
ANALYSIS_RATE_LIMITS_HZ: Final = (50.0, 400.0)
MAX_ABS_T_S: Final = 1e10
"""Timestamps beyond this are no clock we know (Unix seconds are about 2e9)."""
MAX_ABS_ACCEL: Final = 2000.0
"""m/s², about 200 g: no IMU measures more, and squaring more overflows nothing."""
MAX_ABS_GYRO: Final = 200.0
"""rad/s, about 11,000 °/s: over five times the widest gyro range."""
"""Recordings slower than 50 Hz are interpolated up, faster than 400 Hz averaged down."""


class RecordingError(ConfigError):
    """A recording file that cannot be analysed; the message names the file and the fault."""


class UnitError(RecordingError):
    """A recording whose values contradict the units it was given (g as m/s², ms as s)."""


@dataclass(frozen=True, slots=True)
class Recording:
    """Samples of one IMU: ``t`` (n,) s, ``accel`` (n, 3) m/s², ``gyro`` (n, 3) rad/s."""

    t: FloatArray
    accel: FloatArray
    gyro: FloatArray


@dataclass(frozen=True, slots=True)
class Segment:
    """Evenly spaced samples at ``rate_hz``; the same fields as :class:`Recording`."""

    t: FloatArray
    accel: FloatArray
    gyro: FloatArray
    rate_hz: float


def load_csv(
    path: Path, *, accel_unit: AccelUnit = "m/s2", gyro_unit: GyroUnit = "rad/s"
) -> Recording:
    """Read a CSV with a header naming ``t ax ay az gx gy gz`` (other columns are ignored)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise RecordingError(f"{path} is empty")
            names = [name.strip().lower() for name in header]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise RecordingError(
                    f"{path}: header lacks column(s) {', '.join(missing)}; "
                    f"expected {', '.join(COLUMNS)}"
                )
            index = [names.index(c) for c in COLUMNS]
            rows: list[list[float]] = []
            line_numbers: list[int] = []
            for line_number, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                try:
                    values = [float(row[i]) for i in index]
                except (ValueError, IndexError):
                    raise RecordingError(
                        f"{path}, line {line_number}: expected numbers in columns "
                        f"{', '.join(COLUMNS)}, got {row!r}"
                    ) from None
                if not all(math.isfinite(v) for v in values):
                    raise RecordingError(f"{path}, line {line_number}: not a finite number")
                rows.append(values)
                line_numbers.append(line_number)
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path} is not a text CSV file ({exc.reason})") from exc
    except csv.Error as exc:  # e.g. a field longer than any number (131,072 characters)
        raise RecordingError(f"{path}: not a CSV file we can read ({exc})") from exc
    if len(rows) < 10:
        raise RecordingError(f"{path} has {len(rows)} samples; at least 10 are needed")
    data = np.asarray(rows, dtype=np.float64)
    problem = unit_problem(
        data[:, 0], data[:, 1:4], data[:, 4:7], accel_unit=accel_unit, gyro_unit=gyro_unit
    )
    if problem is not None:
        raise UnitError(f"{path}: {problem}")
    # Huge but finite values would overflow in the unit conversion or the analysis.
    with np.errstate(over="ignore"):
        accel = data[:, 1:4] * (G if accel_unit == "g" else 1.0)
        gyro = data[:, 4:7] * (math.pi / 180.0 if gyro_unit == "deg/s" else 1.0)
    out_of_range = (
        (np.abs(data[:, 0]) > MAX_ABS_T_S)
        | np.any(np.abs(accel) > MAX_ABS_ACCEL, axis=1)
        | np.any(np.abs(gyro) > MAX_ABS_GYRO, axis=1)
    )
    if np.any(out_of_range):
        line_number = line_numbers[int(np.argmax(out_of_range))]
        raise RecordingError(
            f"{path}, line {line_number}: a value no sensor gives (limits: |t| ≤ "
            f"{MAX_ABS_T_S:g} s, |a| ≤ {MAX_ABS_ACCEL:g} m/s², |ω| ≤ {MAX_ABS_GYRO:g} rad/s); "
            "check --accel-unit and --gyro-unit"
        )
    return Recording(t=data[:, 0], accel=accel, gyro=gyro)


def regularise(
    recording: Recording, *, max_gap_s: float = 1.0, rate_hz: float | None = None
) -> list[Segment]:
    """Return evenly sampled segments: gaps up to ``max_gap_s`` interpolated, longer ones cut."""
    order = np.argsort(recording.t, kind="stable")
    t = recording.t[order]
    values = np.hstack([recording.accel[order], recording.gyro[order]])
    t, values = _merge_duplicates(t, values)
    if len(t) < 2:
        raise RecordingError("the recording has fewer than two distinct timestamps")
    t, values = _drop_resent(t, values)
    steps = np.diff(t)
    native = _native_rate(steps, max_gap_s)
    if not MIN_RATE_HZ * 0.8 <= native <= MAX_RATE_HZ * 1.25:
        raise RecordingError(
            f"the sample rate is {native:.1f} Hz; recordings from "
            f"{MIN_RATE_HZ:g} to {MAX_RATE_HZ:g} Hz can be analysed (is t in seconds?)"
        )
    low, high = ANALYSIS_RATE_LIMITS_HZ
    target = rate_hz or min(max(native, low), high)
    cuts = np.flatnonzero(steps > max(max_gap_s, 2.5 / native)) + 1
    segments: list[Segment] = []
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(t)], strict=True):
        segment = _resample(t[start:stop], values[start:stop], target, native)
        if segment is not None:
            segments.append(segment)
    if not segments:
        raise RecordingError("no stretch of the recording is long enough to analyse (≥ 1 s)")
    return segments


def _drop_resent(t: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Drop a row that repeats the one before it and comes sooner than the usual spacing.

    Phone apps log the same sample again when a notification carries it twice, a few
    milliseconds after the first; a sensor that really reads the same values twice (a
    quantised one lying still) reads them a full sample period apart, and is kept.
    """
    if len(t) < 3:
        return t, values
    same = np.r_[False, np.all(values[1:] == values[:-1], axis=1)]
    if not same.any():
        return t, values
    steps = np.diff(t)
    usual = float(np.median(steps[~same[1:]])) if (~same[1:]).any() else float(np.median(steps))
    resent = same & np.r_[False, steps < 0.5 * usual]
    return t[~resent], values[~resent]


def _native_rate(steps: FloatArray, max_gap_s: float) -> float:
    """Samples per second, counted over the stretches without a gap.

    Arrival timestamps come in bursts (several samples per BLE connection event, a few ms
    apart, then tens of ms of nothing), so the median spacing says little; the count per
    second does.
    """
    median = float(np.median(steps))
    inside = steps[steps <= max(max_gap_s, 10.0 * median)]
    if len(inside) == 0 or float(inside.sum()) <= 0:
        return 1.0 / median
    return len(inside) / float(inside.sum())


def _merge_duplicates(t: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    unique, inverse, counts = np.unique(t, return_inverse=True, return_counts=True)
    if len(unique) == len(t):
        return t, values
    sums = np.zeros((len(unique), values.shape[1]))
    np.add.at(sums, inverse, values)
    return unique, sums / counts[:, None]


def _resample(t: FloatArray, values: FloatArray, rate: float, native: float) -> Segment | None:
    if len(t) < 2 or t[-1] - t[0] < 1.0:
        return None
    if native > rate * 1.5:
        # Average down first (a moving mean over one output period) so nothing aliases.
        width = round(native / rate)
        kernel = np.ones(width) / width
        half = width // 2
        padded = np.pad(values, ((half, width - 1 - half), (0, 0)), mode="edge")
        values = np.column_stack(
            [np.convolve(padded[:, i], kernel, mode="valid") for i in range(values.shape[1])]
        )
    grid = np.arange(t[0], t[-1], 1.0 / rate)
    resampled = np.column_stack([np.interp(grid, t, values[:, i]) for i in range(values.shape[1])])
    return Segment(t=grid, accel=resampled[:, 0:3], gyro=resampled[:, 3:6], rate_hz=rate)


def still_window(
    segment: Segment, *, seconds: float = 1.0, max_gyro_rps: float = 0.1, max_accel_dev: float = 0.4
) -> tuple[float, float] | None:
    """Return the first span of ``seconds`` in which the sensor lies still, or None.

    Still: angular rate below ``max_gyro_rps`` and acceleration within ``max_accel_dev``
    m/s² of gravity throughout. The pelvis's neutral pose is taken from such a span when
    a recording carries no calibration of its own.
    """
    still = (np.linalg.norm(segment.gyro, axis=1) < max_gyro_rps) & (
        np.abs(np.linalg.norm(segment.accel, axis=1) - G) < max_accel_dev
    )
    need = max(2, round(seconds * segment.rate_hz))
    if len(still) < need:
        return None
    full = np.flatnonzero(
        np.convolve(still.astype(np.int64), np.ones(need, np.int64), "valid") == need
    )
    if not len(full):
        return None
    first = int(full[0])
    return float(segment.t[first]), float(segment.t[first + need - 1])
