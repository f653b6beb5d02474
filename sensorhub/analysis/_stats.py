"""numpy's median and quantile of one small 1-D array, to the bit, without their set-up.

The streaming analysis takes a median or a quantile of a few dozen to a few hundred
numbers several times a block; ``np.median`` and ``np.quantile`` spend most of such a
call handling axes, dtypes and methods it does not use (~60 µs of a ~70 µs call).
These sort and interpolate as numpy's default (``linear``) method does, with the same
floating-point operations, so the answers are numpy's own: the tests hold them to it.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["median", "quantile"]


def median(values: npt.NDArray[np.float64]) -> float:
    """``float(np.median(values))`` for a 1-D array (NaN if any value is NaN or none)."""
    ordered = _sorted(values)
    if ordered is None:
        return math.nan
    n = len(ordered)
    half = n // 2
    if n % 2:
        return float(ordered[half])
    return (float(ordered[half - 1]) + float(ordered[half])) / 2


def quantile(values: npt.NDArray[np.float64], q: float) -> float:
    """``float(np.quantile(values, q))`` for a 1-D array, q in [0, 1] (NaN as numpy)."""
    ordered = _sorted(values)
    if ordered is None:
        return math.nan
    n = len(ordered)
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return float(ordered[-1])
    if virtual < 0:
        return float(ordered[0])
    below = math.floor(virtual)
    a, b = float(ordered[below]), float(ordered[below + 1])
    t = virtual - below
    step = b - a
    # numpy's lerp: from the nearer end, so that t = 1 gives b exactly.
    return b - step * (1 - t) if t >= 0.5 else a + step * t


def _sorted(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """``values`` in order; None when there are none or one is NaN (numpy's answer: NaN)."""
    if len(values) == 0:
        return None
    ordered = np.sort(values)
    return None if math.isnan(ordered[-1]) else ordered
