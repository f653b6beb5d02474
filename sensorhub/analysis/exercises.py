"""The exercises the analysis knows, by the names the configuration, MQTT and CLI take.

A module of its own, with nothing to import, so that checking a name costs nothing.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXERCISES"]

EXERCISES: Final = (
    "hip_thrust",
    "bodyweight_hip_thrust",
    "squat",
    "deadlift",
    "romanian_deadlift",
)
