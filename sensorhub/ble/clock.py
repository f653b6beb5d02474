"""Mapping a sensor's drifting, wrapping microsecond clock onto the hub's clock.

A sensor stamps everything with a free-running u32 µs counter that wraps every
2³² µs ≈ 71.6 min and runs up to ±50 ppm off (see "Clocks" in
``firmware_protocol/PROTOCOL.md``). :class:`SensorClock` unwraps those readings into
one continuous 64-bit µs line and fits ``hub_s = a + b * sensor_s`` to TIME_SYNC round
trips, so that sample timestamps can be converted to hub time in bulk.

The fit. A TIME_SYNC sent at hub time ``t0`` and answered at ``t1`` says the sensor
read its clock at some hub time in ``[t0, t1]``; the midpoint is the estimate, good to
half the round trip. Over the last ``window`` syncs the clock picks the line that
passes through all those intervals with the most room to spare (it maximises the
smallest distance to a ``t0`` plus the smallest distance to a ``t1``). Narrow intervals
(short round trips) therefore decide the fit, and a long one cannot pull it. While
the syncs span less than 1 s the rate is not fitted: only the offset moves, and the
rate stays at its last estimate (1 at first).

Precision depends on how long the syncs span more than on how many there are. In
simulation, with round trips of 5-40 ms and syncs every 2 s, ``window=32`` (64 s)
maps to within 1-4 ms but leaves the drift tens of ppm out (up to ~70); once the
window spans about 5 minutes (``window=160``) the mapping is within 0.6 ms and the
drift within ±5 ppm.

A sync that misses the current fit by more than ``max(jump_threshold_s, its round
trip)`` means the sensor clock jumped or the sensor rebooted: the fit restarts from
that sync alone, keeping only the rate, and ``jumps`` counts it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from sensorhub.errors import ConfigError, SensorhubError

__all__ = ["SensorClock"]

_WRAP = 1 << 32
_HALF = 1 << 31
_MASK = _WRAP - 1
_US = 1e-6
_MIN_SPAN_US = 1_000_000
_MAX_RATE_ERROR = 1e-3
"""The fitted rate is searched within ±1000 ppm of nominal (crystals are within ±50)."""
_BISECTIONS = 48


class _Sync(NamedTuple):
    sensor_us: int
    """Unwrapped sensor time of the reading, µs."""
    sent_s: float
    received_s: float


class SensorClock:
    """Maps one sensor's wrapping 32-bit µs clock onto hub time (seconds, hub monotonic clock).

    Keyword arguments:

    ``window``
        How many recent TIME_SYNC exchanges the fit uses (≥ 2).
    ``jump_threshold_s``
        How far a sync may miss the fit (seconds, > 0) before it counts as a clock
        jump; a sync's own round trip widens it.
    """

    def __init__(self, *, window: int = 32, jump_threshold_s: float = 0.05) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            msg = f"window={window!r} must be an int ≥ 2 (TIME_SYNC exchanges in the fit)"
            raise ConfigError(msg)
        if not (math.isfinite(jump_threshold_s) and jump_threshold_s > 0):
            msg = f"jump_threshold_s={jump_threshold_s!r} must be a positive number of seconds"
            raise ConfigError(msg)
        self._jump_threshold_s = float(jump_threshold_s)
        self._syncs: deque[_Sync] = deque(maxlen=window)
        self._last_us: int | None = None
        self._origin_us = 0
        """Sensor µs at which ``hub_s == _offset_s``; kept near the syncs for precision."""
        self._offset_s = 0.0
        self._rate = 1.0
        """Hub seconds per sensor second."""
        self._jumps = 0

    @property
    def synced(self) -> bool:
        """Whether at least one TIME_SYNC has been fitted, so :meth:`to_hub` can answer."""
        return bool(self._syncs)

    @property
    def drift_ppm(self) -> float:
        """How fast the sensor clock runs against the hub's, ppm (positive: sensor fast)."""
        return (1.0 / self._rate - 1.0) * 1e6

    @property
    def jumps(self) -> int:
        """How many times the sensor clock jumped (or the sensor rebooted) under the fit."""
        return self._jumps

    @property
    def rtt_s(self) -> float:
        """The shortest round trip among the syncs in the fit, seconds (inf before any)."""
        return min((s.received_s - s.sent_s for s in self._syncs), default=math.inf)

    def unwrap(self, sensor_us: int) -> int:
        """Place a u32 sensor reading on the continuous 64-bit µs line.

        Each reading is taken relative to the previous one: forward if the modular
        difference is below 2³¹, otherwise backward. The first reading maps to itself.
        """
        if not 0 <= sensor_us <= _MASK:
            msg = f"sensor_us={sensor_us!r} is not a u32 sensor clock reading"
            raise ConfigError(msg)
        last = self._last_us
        if last is None:
            unwrapped = sensor_us
        else:
            step = (sensor_us - last) & _MASK
            unwrapped = last + step if step < _HALF else last + step - _WRAP
        self._last_us = unwrapped
        return unwrapped

    def add_sync(self, sent_s: float, received_s: float, sensor_us: int) -> None:
        """Add one TIME_SYNC round trip: sent at hub ``sent_s``, answered at ``received_s``.

        ``sensor_us`` is the u32 clock reading from the response; it is unwrapped here.
        """
        if not (math.isfinite(sent_s) and math.isfinite(received_s) and received_s >= sent_s):
            msg = f"TIME_SYNC answered at {received_s!r} s before it was sent at {sent_s!r} s"
            raise ConfigError(msg)
        sync = _Sync(self.unwrap(sensor_us), float(sent_s), float(received_s))
        rtt = sync.received_s - sync.sent_s
        if self._syncs:
            midpoint = (sync.sent_s + sync.received_s) / 2
            predicted = self._offset_s + self._rate * (sync.sensor_us - self._origin_us) * _US
            if abs(midpoint - predicted) > max(self._jump_threshold_s, rtt):
                self._jumps += 1
                self._syncs.clear()
        self._syncs.append(sync)
        self._fit()

    def to_hub(self, sensor_us: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Convert unwrapped sensor times (µs, int64, any shape) to hub seconds (float64)."""
        if not self._syncs:
            msg = "no TIME_SYNC yet: check SensorClock.synced before converting timestamps"
            raise SensorhubError(msg)
        since_origin = np.asarray(sensor_us, dtype=np.int64) - np.int64(self._origin_us)
        hub: npt.NDArray[np.float64] = self._offset_s + self._rate * _US * since_origin.astype(
            np.float64
        )
        return hub

    def _fit(self) -> None:
        self._origin_us = self._syncs[-1].sensor_us
        x = np.fromiter((s.sensor_us - self._origin_us for s in self._syncs), dtype=np.float64)
        x *= _US
        sent = np.fromiter((s.sent_s for s in self._syncs), dtype=np.float64)
        received = np.fromiter((s.received_s for s in self._syncs), dtype=np.float64)
        if len(x) >= 2 and x.max() - x.min() >= _MIN_SPAN_US * _US:
            self._rate = _widest_margin_rate(x, sent, received)
        scaled = self._rate * x
        # The offset that centres the line between the tightest lower and upper bounds.
        self._offset_s = (float(np.max(sent - scaled)) + float(np.min(received - scaled))) / 2


def _widest_margin_rate(
    x: npt.NDArray[np.float64], sent: npt.NDArray[np.float64], received: npt.NDArray[np.float64]
) -> float:
    """The rate ``b`` maximising ``min(received - b·x) - max(sent - b·x)``.

    That margin is concave and piecewise linear in ``b``, so bisection on the sign of
    its slope (``x`` at the maximising ``sent`` minus ``x`` at the minimising
    ``received``) finds the top.
    """
    low, high = 1.0 - _MAX_RATE_ERROR, 1.0 + _MAX_RATE_ERROR
    for _ in range(_BISECTIONS):
        rate = (low + high) / 2
        slope = x[np.argmax(sent - rate * x)] - x[np.argmin(received - rate * x)]
        if slope > 0:
            low = rate
        else:
            high = rate
    return (low + high) / 2
