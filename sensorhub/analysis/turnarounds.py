"""Where a lift turns: the tops and bottoms of the vertical movement, found without drift.

Integrated twice, a vertical acceleration with a bias of 0.05 m/s² drifts by metres in
half a minute, but a rep is a swing of a few tenths of a metre every one to five
seconds. Band-passed to those rates (a second-order Butterworth, 0.15-3 Hz, forwards
and backwards so that nothing shifts in time), the doubly integrated acceleration keeps
the swings and loses the drift: :func:`height_proxy`. Its tops and bottoms are found
with hysteresis (:func:`swing_extremes`): an extreme counts once the proxy has come
back from it by a share of the recording's own typical swing (:func:`typical_swing`),
so a footstep or the wobble of a bar carried slowly down is not taken for a turn.

The proxy's heights are not metres of travel (the filter bends slow and fast lifts
differently); it says *where* the velocity is zero, and the velocity between two such
points is then integrated from the acceleration itself
(:mod:`sensorhub.analysis.velocity`). Units: s, m/s², m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, sosfilt, sosfilt_zi

from sensorhub.analysis._stats import quantile

try:  # the compiled kernel under scipy's sosfilt, without its per-call checks and copies
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # another scipy: its public sosfilt, the same arithmetic, slower
    _sosfilt_kernel = None

__all__ = [
    "BAND_HZ",
    "cumulative_trapezoid",
    "height_proxy",
    "swing_extremes",
    "typical_swing",
]

FloatArray = npt.NDArray[np.float64]

BAND_HZ: Final = (0.15, 3.0)
"""The rates a rep lives in: a five-second squat to a 0.3 s touch-and-go bounce."""
SWING_SHARE: Final = 0.3
"""A turn must reverse by this share of the typical swing ..."""
SWING_QUANTILE: Final = 0.75
"""... the typical swing being this quantile of the swings the proxy makes."""
NOISE_SWING_M: Final = 0.01
"""Swings of the proxy smaller than this are not counted as swings at all (m)."""


def cumulative_trapezoid(y: FloatArray, t: FloatArray) -> FloatArray:
    """Running trapezoid integral of ``y`` over ``t`` (n,), 0 at the first sample."""
    out = np.zeros(len(y))
    if len(y) > 1:
        np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(t), out=out[1:])
    return out


def height_proxy(accel: FloatArray, rate_hz: float) -> FloatArray:
    """The band-passed double integral of a vertical acceleration (n,) m/s² at ``rate_hz``.

    Zero-phase: an extreme of the proxy lies where the movement turned. Needs at least a
    few samples; shorter input comes back as zeros.
    """
    n = len(accel)
    out = np.zeros(n)
    if n < 8:
        return out
    band, highpass = _filters(rate_hz)
    velocity = np.cumsum(accel - float(np.mean(accel))) / rate_hz
    velocity = _filtfilt(band, velocity - float(np.mean(velocity)))
    height = np.cumsum(velocity) / rate_hz
    out[:] = _filtfilt(highpass, height - float(np.mean(height)))
    return out


@dataclass(frozen=True, slots=True)
class _Filter:
    """A filter's second-order sections and their steady-state initial conditions."""

    sos: FloatArray
    zi: FloatArray
    pad: int
    """Samples of odd extension at each end (as :func:`scipy.signal.sosfiltfilt` pads)."""


def _filtfilt(f: _Filter, x: FloatArray) -> FloatArray:
    """:func:`scipy.signal.sosfiltfilt` of ``x`` (n,) with odd padding, the same arithmetic.

    The proxy is filtered anew at every block, and what ``sosfiltfilt`` does besides
    filtering (designing the initial conditions, checking its input) cost more than the
    filtering itself; here that is done once per filter.
    """
    pad = min(len(x) - 1, f.pad)
    if pad > 0:
        x = np.concatenate([2 * x[:1] - x[pad:0:-1], x, 2 * x[-1:] - x[-2 : -(pad + 2) : -1]])
    forwards = _sosfilt(f.sos, x, f.zi * x[:1])
    backwards = _sosfilt(f.sos, forwards[::-1], f.zi * forwards[-1:])
    y: FloatArray = backwards[::-1]
    return y[pad:-pad] if pad > 0 else y


def _sosfilt(sos: FloatArray, x: FloatArray, zi: FloatArray) -> FloatArray:
    """``scipy.signal.sosfilt(sos, x, zi=zi)[0]`` for a 1-D ``x``, bit for bit.

    scipy's sosfilt checks and reshapes its arguments at every call: about 50 µs of a
    65 µs call on a thousand-sample buffer. Its compiled kernel, called here as sosfilt
    calls it, is the filter alone (``zi`` is a fresh array: the kernel overwrites it).
    """
    if _sosfilt_kernel is None:
        filtered, _ = sosfilt(sos, x, zi=zi)
        return np.asarray(filtered, dtype=np.float64)
    y = np.array(x, dtype=np.float64, order="C").reshape(1, -1)
    _sosfilt_kernel(sos, y, np.ascontiguousarray(zi.reshape(1, -1, 2)))
    out: FloatArray = y[0]
    return out


@lru_cache(maxsize=64)
def _filters(rate_hz: float) -> tuple[_Filter, _Filter]:
    """The proxy's band-pass and high-pass at ``rate_hz`` (second-order sections).

    Designed once per rate: the design costs more than filtering a live frame's buffer.
    """
    low, high = BAND_HZ
    band = butter(2, [low, min(high, 0.45 * rate_hz)], btype="band", fs=rate_hz, output="sos")
    highpass = butter(2, low, btype="high", fs=rate_hz, output="sos")
    return _design(band), _design(highpass)


def _design(sos: FloatArray) -> _Filter:
    """``sos`` with the initial conditions and padding :func:`scipy.signal.sosfiltfilt` gives it.

    Shared between calls: not to be written to (scipy wants the arrays writable).
    """
    return _Filter(sos, sosfilt_zi(sos), 3 * 2 * (len(sos) + 1))


def swing_extremes(height: FloatArray, swing_m: float) -> list[int]:
    """Indices of the alternating extremes of ``height`` that reverse by at least ``swing_m``.

    An extreme is reported once the height has come back from it by ``swing_m``; a last
    extreme not yet confirmed so is left out.
    """
    if not math.isfinite(swing_m) or swing_m <= 0:
        raise ValueError(f"swing_m = {swing_m!r}: must be a positive distance")
    out: list[int] = []
    # Only where the height stops rising or falling can an extreme lie or a swing come
    # back far enough: the samples inside a strictly monotone run are passed over (the
    # proxy is smooth, so that is most of them), with the same answer.
    keep = _turning_points(height)
    z = height[keep].tolist()
    index = keep.tolist()
    hi = lo = 0
    state = 0  # 0: no direction yet, 1: rising (looking for a top), -1: falling
    for i in range(1, len(z)):
        zi = z[i]
        if state >= 0 and zi > z[hi]:
            hi = i
        if state <= 0 and zi < z[lo]:
            lo = i
        if state >= 0 and zi < z[hi] - swing_m:
            out.append(index[hi])
            state, lo = -1, i
        elif state <= 0 and zi > z[lo] + swing_m:
            out.append(index[lo])
            state, hi = 1, i
    return out


def _turning_points(height: FloatArray) -> npt.NDArray[np.intp]:
    """Indices of ``height`` (n,) save those strictly inside a strictly monotone run.

    The first and last samples stay, and so does every sample where the direction
    changes, the height is flat or not a number.
    """
    n = len(height)
    if n < 3:
        return np.arange(n)
    direction = np.sign(np.diff(height))
    inside = direction[:-1] * direction[1:] > 0
    return np.flatnonzero(np.concatenate([[False], inside, [False]]) == 0)


def typical_swing(height: FloatArray) -> float:
    """The recording's own typical swing of the proxy (m); 0 when it never swings."""
    ext = swing_extremes(height, NOISE_SWING_M)
    if len(ext) < 2:
        return 0.0
    return quantile(np.abs(np.diff(height[ext])), SWING_QUANTILE)
