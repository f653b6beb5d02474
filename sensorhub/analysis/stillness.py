"""Which samples look still, judged against the sensor's own quietest stretches.

A person holding a bar "still" moves it: windows of real stillness vary by 0.1-0.3 m/s²
per accelerometer axis and 0.015-0.025 rad/s, and a cheap part's gyroscope reads several
°/s at rest. Bounds fitted to one sensor's noise fail on the next, so nothing here is an
absolute threshold on the signal. Every sample is judged on a centred window
(``window_s``): the spread of the lightly smoothed |a| (max - min), the largest
deviation of the angular rate from its window mean, and how far that mean lies from the
gyroscope's zero-rate offset. It looks still when all three are within ``margin`` times
the recording's noise floor: the ``quantile`` of the same statistics over the recent
blocks (``history_s``), i.e. of its own quietest stretches. Stillness is a hint, not a
verdict: a slow lift can look as quiet as a hold, and the velocity estimator decides
whether a still-looking run is a rest.

The zero-rate offset comes from :class:`sensorhub.analysis.gyro_offset.GyroOffset`, which
measures it against gravity while the sensor moves (its memory is ``offset_history_s``).

Samples are judged in blocks of ``block_s`` at fixed sample counts, half a window after
they arrive; every statistic is taken at block ends, so the verdicts and the offset are
the same however the stream is batched. Units: m/s², rad/s, s.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from sensorhub.analysis._stats import median, quantile
from sensorhub.analysis.gyro_offset import GyroOffset
from sensorhub.analysis.orientation import vector_norm, windows

__all__ = ["StillnessBlock", "StillnessDetector", "StillnessSettings"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ACCEL_EPS: Final = 1e-3
"""m/s²: below any real accelerometer's noise; keeps a noise-free (synthetic) floor of 0
from making stillness impossible."""
GYRO_EPS: Final = 1e-4
"""rad/s: the same for the gyroscope."""
QUIET_BLOCK_SHARE: Final = 0.8
"""A block whose samples are this quiet (by their spreads) may measure the gyro offset."""


@dataclass(frozen=True, slots=True)
class StillnessSettings:
    """How stillness is judged; see the module docstring."""

    window_s: float = 0.2
    block_s: float = 0.1
    margin: float = 2.5
    quantile: float = 0.1
    history_s: float = 60.0
    offset_history_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("window_s", "block_s", "margin", "history_s", "offset_history_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"StillnessSettings.{name} = {value!r}: must be a positive number")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"StillnessSettings.quantile = {self.quantile!r}: must be in (0, 1)")


@dataclass(frozen=True, slots=True)
class StillnessBlock:
    """One block of judged samples: the raw samples, their verdicts and the offset then.

    ``accel`` (n, 3) m/s², ``gyro`` (n, 3) rad/s as given; ``still`` (n,); ``gyro_offset``
    (3,) rad/s as measured up to the block's end; ``accel_spread`` the block's median
    window spread of |a| (m/s², the quietest blocks measure the noise floor).
    """

    accel: FloatArray
    gyro: FloatArray
    still: BoolArray
    gyro_offset: FloatArray
    accel_spread: float


class StillnessDetector:
    """Streaming stillness verdicts and gyroscope offset; feed raw samples in order."""

    def __init__(self, sample_rate_hz: float, settings: StillnessSettings | None = None) -> None:
        if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
            raise ValueError(f"sample_rate_hz = {sample_rate_hz!r}: must be a positive rate")
        s = self.settings = settings or StillnessSettings()
        rate = float(sample_rate_hz)
        self.half = max(1, round(0.5 * s.window_s * rate))
        self.block = max(1, round(s.block_s * rate))
        self._smooth = max(1, round(rate / 100.0))
        blocks = max(1, round(s.history_s / (self.block / rate)))
        self._floor_a: deque[float] = deque(maxlen=blocks)
        self._floor_g: deque[float] = deque(maxlen=blocks)
        self._rate = rate
        self._offsets = GyroOffset(memory_s=s.offset_history_s)
        self.gyro_offset: FloatArray | None = None
        """Zero-rate offset (3,) rad/s as measured so far; None before the first block."""
        # Samples from `half` before the first unjudged one: raw, smoothed |a|.
        self._accel = np.empty((0, 3))
        self._gyro = np.empty((0, 3))
        self._norm = np.empty(0)
        self._judged = 0  # samples judged so far
        self._first = 0  # global index of the buffers' first sample
        self._tail = np.empty((0, 3))  # raw accel before the buffers, for the smoothing

    @property
    def lag(self) -> int:
        """Samples that may be held back before their block is judged (at most)."""
        return self.half + self.block - 1

    def push(self, accel: FloatArray, gyro: FloatArray) -> list[StillnessBlock]:
        """Take samples (n, 3) m/s² and rad/s; return the blocks now judged, in order."""
        accel = np.asarray(accel, dtype=np.float64).reshape(-1, 3)
        gyro = np.asarray(gyro, dtype=np.float64).reshape(-1, 3)
        if len(accel) != len(gyro):
            raise ValueError(f"accel and gyro differ in length ({len(accel)}, {len(gyro)})")
        if len(accel):
            self._append(accel, gyro)
        out = []
        while self._first + len(self._norm) - self._judged >= self.block + self.half:
            out.append(self._judge(self.block, final=False))
        return out

    def flush(self) -> list[StillnessBlock]:
        """End of the stream: judge what is left (the window shrinks to what exists)."""
        out = []
        while self._first + len(self._norm) > self._judged:
            left = self._first + len(self._norm) - self._judged
            out.append(self._judge(min(self.block, left), final=True))
        return out

    def _append(self, accel: FloatArray, gyro: FloatArray) -> None:
        k = self._smooth
        history = np.concatenate([self._tail, accel])
        # Causal moving average of |a| over k samples, lag by lag (batching-independent).
        n_old, n_new = len(self._tail), len(accel)
        total = np.zeros((n_new, 3))
        count = np.zeros(n_new)
        for lag in range(k):
            idx = np.arange(n_old, n_old + n_new) - lag
            have = idx >= 0
            total[have] += history[idx[have]]
            count += have
        smoothed = vector_norm(total / count[:, None], axis=1)
        self._tail = history[len(history) - (k - 1) :] if k > 1 else np.empty((0, 3))
        self._accel = np.concatenate([self._accel, accel])
        self._gyro = np.concatenate([self._gyro, gyro])
        self._norm = np.concatenate([self._norm, smoothed])

    def _judge(self, size: int, *, final: bool) -> StillnessBlock:
        h = self.half
        lo = self._judged - self._first  # buffer index of the block's first sample
        n = len(self._norm)
        # Windows reach h either side; at the stream's ends they repeat the edge sample.
        idx = np.clip(np.arange(lo - h, lo + size + h), 0, n - 1)
        norm = self._norm[idx]
        gyro = self._gyro[idx]
        span = 2 * h + 1
        win_n = windows(norm, span)
        spread_a = win_n.max(axis=1) - win_n.min(axis=1)
        win_g = windows(np.ascontiguousarray(gyro.T), span, axis=1)  # (3, size, span)
        mean_g = win_g.mean(axis=2).T  # (size, 3)
        dev = win_g - mean_g.T[:, :, None]
        spread_g = np.sqrt((dev * dev).sum(axis=0)).max(axis=1)
        block_a = self._accel[lo : lo + size]
        block_g = self._gyro[lo : lo + size]
        # The block's statistics join the history before it is judged: the first block
        # is judged against itself, later ones against all recent blocks.
        median_a = median(spread_a)
        median_g = median(spread_g)
        self._floor_a.append(median_a)
        self._floor_g.append(median_g)
        s = self.settings
        floor_a = quantile(np.fromiter(self._floor_a, float), s.quantile)
        floor_g = quantile(np.fromiter(self._floor_g, float), s.quantile)
        bound_g = s.margin * floor_g + GYRO_EPS
        quiet = (spread_a < s.margin * floor_a + ACCEL_EPS) & (spread_g < bound_g)
        offset = self._offsets.add(
            size / self._rate,
            block_a.mean(axis=0),
            block_g.mean(axis=0),
            median_a,
            quiet=bool(quiet.mean() >= QUIET_BLOCK_SHARE),
            gyro_spread=median_g,
        )
        self.gyro_offset = offset
        still = quiet & (vector_norm(mean_g - offset, axis=1) < bound_g)
        self._judged += size
        # Keep h samples before the next block for its windows.
        keep = max(0, self._judged - h - self._first)
        self._accel = self._accel[keep:]
        self._gyro = self._gyro[keep:]
        self._norm = self._norm[keep:]
        self._first += keep
        return StillnessBlock(block_a, block_g, still, offset.copy(), median_a)
