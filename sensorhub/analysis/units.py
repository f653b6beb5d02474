"""A recording's units, told from its values: seconds or milliseconds, m/s² or g, rad/s or °/s.

A CSV of IMU samples says nothing of its units, and the wrong guess does not fail: it
analyses into nonsense, or into no reps at all. The values themselves tell:

- **Time.** Every rate the analysis takes (10 Hz to 1 kHz) spaces samples by 0.1 s or
  less. A median spacing of :data:`MS_SPACING_MIN` or more is no such rate in seconds;
  read as milliseconds (or microseconds) it usually is one. The times are checked
  first: a recording in milliseconds is not to be blamed on its accelerometer.
- **Acceleration.** At rest an accelerometer reads gravity: about 9.81 in m/s², about 1
  in g. The rest magnitude is the median ``|a|`` over the quietest quarter of the
  samples (by angular rate), which in any lifting session holds the rests between
  reps and sets; a lift in motion keeps it within tens of percent of gravity. Near
  neither, the values are in neither unit (raw counts, or gravity taken out).
- **Angular rate.** A bar or a pelvis turns at under about 15 rad/s (860 °/s) even when
  set down hard. A recording whose 99th percentile of ``|ω|`` passes
  :data:`MAX_HUMAN_RATE_RAD_S` "rad/s" is in °/s; a lift in °/s passes it at once (a
  bar tilting through a squat turns at tens of °/s). The opposite mistake (rad/s given
  as °/s) looks like a sensor that barely turns, which a bar in a squat truly is: it
  cannot be told, and is not guessed at.

The checks take the values as read, before any conversion (``t`` (n,), ``accel`` (n, 3),
``gyro`` (n, 3)), and return what is wrong in words, naming the fix, or ``None``.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sensorhub.analysis.orientation import G

__all__ = [
    "ACCEL_REST_BAND",
    "MAX_HUMAN_RATE_RAD_S",
    "MS_SPACING_MIN",
    "accel_unit_problem",
    "gyro_unit_problem",
    "rest_magnitude",
    "time_unit_problem",
    "unit_problem",
]

FloatArray = npt.NDArray[np.float64]
AccelUnit = Literal["g", "m/s2"]
GyroUnit = Literal["deg/s", "rad/s"]

MS_SPACING_MIN: Final = 1.0
"""A median sample spacing this large (in the file's time unit) is not seconds."""
ANALYSABLE_RATES_HZ: Final = (10.0, 1000.0)
"""The sample rates :func:`sensorhub.analysis.recording.regularise` takes."""
ACCEL_REST_BAND: Final = (0.6, 1.6)
"""The rest magnitude in the given unit, as a multiple of gravity in that unit, that is
taken as gravity: offsets, a lift never quite still and a tilted sensor stay inside."""
MAX_HUMAN_RATE_RAD_S: Final = 20.0
"""A 99th percentile of |ω| above this, in rad/s, is not a bar or a pelvis turning."""
_RATE_PERCENTILE: Final = 99.0
_QUIET_SHARE: Final = 0.25
_ACCEL_FIX: Final = "give the accelerometer unit (--accel-unit; accel_unit in labels.csv)"
_GYRO_FIX: Final = "give the gyroscope unit (--gyro-unit; gyro_unit in labels.csv)"


def unit_problem(
    t: FloatArray,
    accel: FloatArray,
    gyro: FloatArray,
    *,
    accel_unit: AccelUnit,
    gyro_unit: GyroUnit,
) -> str | None:
    """The first unit that the values contradict, in words with the fix; None if none.

    ``accel`` and ``gyro`` as read, in the units the caller was told; times first, then
    the accelerometer, then the gyroscope. Values too large to square are no unit's
    doing: they pass here, for the range check that follows to name them.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return (
            time_unit_problem(t)
            or accel_unit_problem(accel, gyro, accel_unit=accel_unit)
            or gyro_unit_problem(gyro, gyro_unit=gyro_unit)
        )


def time_unit_problem(t: FloatArray) -> str | None:
    """Say so if the times ``t`` (n,) look like milliseconds or microseconds, not seconds."""
    steps = np.diff(np.unique(np.asarray(t, dtype=np.float64)))
    if len(steps) == 0:
        return None
    spacing = float(np.median(steps))
    if not math.isfinite(spacing) or spacing < MS_SPACING_MIN:
        return None
    low, high = ANALYSABLE_RATES_HZ
    as_seconds = f"t steps by {spacing:g} (median): as seconds that is {1.0 / spacing:.1f} Hz"
    for unit, per_second in (("milliseconds", 1e3), ("microseconds", 1e6)):
        rate = per_second / spacing
        if low * 0.8 <= rate <= high * 1.25:
            return (
                f"{as_seconds}, too slow for any IMU; the times look like {unit} "
                f"({rate:.0f} Hz): give t in seconds (divide it by {per_second:g})"
            )
    return (
        f"{as_seconds}, and no rate from {low:g} to {high:g} Hz in milliseconds or "
        "microseconds either: give t in seconds"
    )


def rest_magnitude(accel: FloatArray, gyro: FloatArray) -> float:
    """The accelerometer's magnitude at rest, in its own unit: median ``|a|`` when quietest.

    Quietest: the quarter of the samples with the smallest ``|ω|`` (all samples when the
    angular rate never changes, as in a gyroscope that reads nothing).
    """
    magnitude = np.linalg.norm(np.asarray(accel, dtype=np.float64), axis=1)
    rate = np.linalg.norm(np.asarray(gyro, dtype=np.float64), axis=1)
    quiet = rate <= np.quantile(rate, _QUIET_SHARE)
    return float(np.median(magnitude[quiet]))


def accel_unit_problem(accel: FloatArray, gyro: FloatArray, *, accel_unit: AccelUnit) -> str | None:
    """Say so if the accelerometer's rest magnitude is not gravity in ``accel_unit``."""
    rest = rest_magnitude(accel, gyro)
    low, high = ACCEL_REST_BAND
    gravity = {"m/s2": G, "g": 1.0}
    if not math.isfinite(rest):
        return None  # the range check that follows names the bad value
    if low * gravity[accel_unit] <= rest <= high * gravity[accel_unit]:
        return None
    reads = f"the accelerometer reads {rest:.3g} at rest"
    if accel_unit == "m/s2" and low <= rest <= high:
        return f"{reads}: that is gravity in g, not m/s² (9.81); {_ACCEL_FIX} as g"
    if accel_unit == "g" and low * G <= rest <= high * G:
        return f"{reads}: that is gravity in m/s², not g; {_ACCEL_FIX} as m/s2"
    return (
        f"{reads}, near neither gravity in m/s² (9.81) nor in g (1): give it in m/s² or g "
        "(raw sensor counts need the sensor's scale; gravity must not be taken out)"
    )


def gyro_unit_problem(gyro: FloatArray, *, gyro_unit: GyroUnit) -> str | None:
    """Say so if angular rates given as rad/s turn faster than a bar or a pelvis can."""
    if gyro_unit != "rad/s":
        return None
    rate = np.linalg.norm(np.asarray(gyro, dtype=np.float64), axis=1)
    fast = float(np.percentile(rate, _RATE_PERCENTILE))
    if not math.isfinite(fast) or fast <= MAX_HUMAN_RATE_RAD_S:
        return None
    return (
        f"1 % of the gyroscope's samples turn faster than {fast:.0f} rad/s "
        f"({math.degrees(fast):.0f} °/s), and a bar or a pelvis turns at under 15 rad/s: "
        f"the values look like °/s; {_GYRO_FIX} as deg/s"
    )
