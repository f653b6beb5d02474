"""When the athlete holds the neutral pelvis that tilt is measured from.

One definition for pairing, the ``calibrate`` command, and a session whose pelvis came
with no neutral from pairing (the live hub and its replay); no imports, so that pairing
stays light.
"""

from __future__ import annotations

from typing import Final

__all__ = ["NEUTRAL_DELAY_S", "NEUTRAL_HOLD_S", "neutral_window"]

NEUTRAL_DELAY_S: Final = 0.5
"""From being asked to holding still: the window starts this long (s) after."""
NEUTRAL_HOLD_S: Final = 3.0
"""The neutral pelvis is measured over this long (s)."""


def neutral_window(start: float) -> tuple[float, float]:
    """Where the athlete holds the neutral pelvis when asked to at ``start`` (s)."""
    return (start + NEUTRAL_DELAY_S, start + NEUTRAL_DELAY_S + NEUTRAL_HOLD_S)
