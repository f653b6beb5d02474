"""What the analysis tells the rest of the hub: typed events, ready for MQTT and storage.

Times are hub seconds (the same clock as the samples); velocities m/s, lengths m,
angles degrees (events are for people and dashboards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sensorhub.analysis.reps import Rep
from sensorhub.analysis.sets import SetSummary
from sensorhub.analysis.tilt import RepTilt

RepSource = Literal["bar_velocity", "bar_imu", "pelvis_imu"]


@dataclass(frozen=True, slots=True)
class TiltUpdate:
    """The pelvic tilt now (sent at most 10 times a second)."""

    athlete: str
    t: float
    tilt_deg: float


@dataclass(frozen=True, slots=True)
class VelocityUpdate:
    """The bar's vertical velocity and height now (sent at most 10 times a second).

    ``height_m`` is relative to where the lift source's stream started. From the IMU the
    value trails the live samples by the rest-detection window (about 0.2 s), and inside
    a movement the velocity is not yet drift-corrected and the height is the movement's
    start (both are corrected in the rep that follows).
    """

    athlete: str
    t: float
    velocity_mps: float
    height_m: float
    source: RepSource


@dataclass(frozen=True, slots=True)
class RepCompleted:
    """A rep, as soon as it has ended, with its velocity metrics and pelvic tilt."""

    athlete: str
    exercise: str
    set_index: int
    rep_in_set: int
    rep: Rep
    tilt: RepTilt | None
    source: RepSource


@dataclass(frozen=True, slots=True)
class SetCompleted:
    """A set, once the rest after it shows it is over (or the session ends)."""

    athlete: str
    exercise: str
    summary: SetSummary


@dataclass(frozen=True, slots=True)
class Alert:
    """Something to tell the athlete now: velocity loss past the threshold, a tilt cue."""

    athlete: str
    t: float
    kind: Literal["velocity_loss", "anterior_tilt", "large_tilt_range"]
    message: str
    set_index: int
    rep_in_set: int


Event = TiltUpdate | VelocityUpdate | RepCompleted | SetCompleted | Alert
