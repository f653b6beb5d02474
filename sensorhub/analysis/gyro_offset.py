"""The gyroscope's zero-rate offset, measured against gravity while the sensor moves.

A cheap part reads several °/s at rest, and a sensor held by a person is never at rest
for long, so the offset cannot wait for stillness. Gravity gives it away instead: seen
from the sensor, the up direction ``u`` turns only as the sensor turns, ``du/dt =
-(ω - b) × u`` with ``ω`` the measured rate and ``b`` its offset. Over a span of
:data:`SPAN_S` a lift's turns come back, so the mean rate is nearly all offset, and the
little the sensor did turn between the span's ends is what the accelerometer says (its
direction averaged over half a second at each end, where the lift's own acceleration
mostly averages out). Each span gives two equations in ``b``, the components across
``u`` (the one along it is a turn about the vertical, which no tilt or vertical
acceleration depends on); spans whose ends turned more than 20° are left out, and the
equations are weighted by how still the ends were and solved by least squares with a
forgetting time of ``memory_s``. Long spans also make the estimate indifferent to what
short ones are sensitive to: a gyroscope whose scale is a little off, or whose samples
are not quite aligned in time with the accelerometer's. Until the first span is
complete the estimate is the mean rate so far; it stays as a weak prior after that.

Feed block means in order with :meth:`GyroOffset.add`; the estimate is in
:attr:`GyroOffset.value`. Units: rad/s, m/s², s.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["GyroOffset"]

FloatArray = npt.NDArray[np.float64]

SPAN_S: Final = 10.0
"""A span runs this long: over it a lift's turns come back, and what the accelerometer
says of gravity at its two ends (averaged over END_S each) is little disturbed by the
lift's own acceleration."""
END_S: Final = 0.5
MIN_SPAN_S: Final = 2.0
"""Until a stream is SPAN_S long its spans are as long as it is, from this long on: a
sensor that starts still (a calibration hold) has its offset within seconds."""
QUIET_RUN_S: Final = 1.0
"""A run of quiet blocks this long measures the offset directly (if gravity held still)."""
PRIOR_SIGMA: Final = 0.05
"""rad/s (3 °/s): how well the first estimate is known (a cheap part's offset is unknown to
that order); the spans' equations outweigh it within a span or two."""


def _skew(u: FloatArray) -> FloatArray:
    """The matrix [u]× with [u]× b = u × b."""
    return np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])


class GyroOffset:
    """Streaming zero-rate offset from gravity tracking (see the module docstring)."""

    def __init__(self, *, memory_s: float = 30.0) -> None:
        if not (math.isfinite(memory_s) and memory_s > 0):
            raise ValueError(f"memory_s = {memory_s!r}: must be a positive number of seconds")
        self.memory_s = memory_s
        self.value: FloatArray | None = None
        """The offset (3,) rad/s; None before the first block."""
        self._blocks: deque[tuple[float, FloatArray, FloatArray, float]] = deque()
        self._normal = np.zeros((3, 3))
        self._rhs = np.zeros(3)
        self._sum = np.zeros(3)
        self._seconds = 0.0
        self._run: list[tuple[float, FloatArray, FloatArray, float]] = []

    def add(
        self,
        duration_s: float,
        accel: FloatArray,
        gyro: FloatArray,
        accel_spread: float,
        *,
        quiet: bool = False,
        gyro_spread: float = 0.0,
    ) -> FloatArray:
        """Take one block's mean accel (3,) m/s², mean rate (3,) rad/s and |a| spread.

        ``accel_spread`` (m/s²) says how much the block's accelerometer varied: the
        quieter the span, the more its accelerometer is gravity alone. Returns the
        estimate after it.
        """
        self._sum += duration_s * np.asarray(gyro, dtype=np.float64)
        self._seconds += duration_s
        self._blocks.append(
            (duration_s, np.asarray(accel, float), np.asarray(gyro, float), accel_spread)
        )
        while sum(b[0] for b in self._blocks) - self._blocks[0][0] > SPAN_S:
            self._blocks.popleft()
        forget = math.exp(-duration_s / self.memory_s)
        self._normal *= forget
        self._rhs *= forget
        if sum(b[0] for b in self._blocks) >= MIN_SPAN_S:
            self._add_span(duration_s)
        self._quiet_run(duration_s, accel, gyro, quiet, gyro_spread)
        self.value = self._solve()
        return self.value

    def _add_span(self, weight_s: float) -> None:
        """The span ending with the newest block, counted for ``weight_s`` seconds."""
        blocks = list(self._blocks)
        ends = max(1, round(END_S / blocks[-1][0]))
        head, tail = blocks[:ends], blocks[-ends:]
        a0 = np.mean([b[1] for b in head], axis=0)
        a1 = np.mean([b[1] for b in tail], axis=0)
        norm0, norm1 = float(np.linalg.norm(a0)), float(np.linalg.norm(a1))
        if norm0 <= 0 or norm1 <= 0:
            return
        u0, u1 = a0 / norm0, a1 / norm1
        if float(u0 @ u1) < math.cos(math.radians(20.0)):
            return  # turned too far for the small-angle equations (sitting down, say)
        # The rates between the two ends' centres, and the time between those centres.
        mid = blocks[(ends + 1) // 2 : len(blocks) - ends // 2]
        dt = sum(b[0] for b in mid)
        if dt <= 0:
            return
        omega = np.sum([b[0] * b[2] for b in mid], axis=0) / dt
        u = u0 + u1
        u /= float(np.linalg.norm(u))
        residual = (u1 - u0) / dt + np.cross(omega, u)  # = b × u = -[u]× b
        # Each end's direction is known to about its |a| spread over |a|, less for
        # being averaged over several blocks; over dt that is the span's rate error.
        spread = max(b[3] for b in head + tail)
        sigma = max(spread / (0.5 * (norm0 + norm1)), 1e-4) / (math.sqrt(ends) * dt)
        m = _skew(u)
        w = weight_s / (sigma * sigma)
        self._normal += w * (m.T @ m)
        self._rhs += w * (m.T @ (-residual))

    def _quiet_run(
        self, duration_s: float, accel: FloatArray, gyro: FloatArray, quiet: bool, spread: float
    ) -> None:
        """A run of quiet blocks whose gravity did not turn measures the offset directly.

        Quiet is not enough (a sensor turning evenly is quiet too); over QUIET_RUN_S the
        accelerometer shows whether it turned. A run that did not measures all three
        components of the offset, with the run's own noise.
        """
        if not quiet:
            self._run.clear()
            return
        self._run.append((duration_s, np.asarray(accel, float), np.asarray(gyro, float), spread))
        seconds = sum(b[0] for b in self._run)
        if seconds < QUIET_RUN_S:
            return
        run, self._run = self._run, []
        ends = max(1, len(run) // 4)
        u0 = np.mean([b[1] for b in run[:ends]], axis=0)
        u1 = np.mean([b[1] for b in run[-ends:]], axis=0)
        u0 /= float(np.linalg.norm(u0))
        u1 /= float(np.linalg.norm(u1))
        mean = np.sum([b[0] * b[2] for b in run], axis=0) / seconds
        turned = float(np.linalg.norm(np.cross(u0, u1)))  # rad, across gravity
        # What the gyroscope's mean rate says it turned, across gravity, over the run.
        claimed = float(np.linalg.norm(np.cross(mean - self._solve_only(), u0))) * seconds
        if turned > 0.5 * claimed + math.radians(0.5):
            return  # the body turned: not a measurement of the offset
        sigma = max(*(b[3] for b in run), 1e-4) / math.sqrt(max(1.0, seconds / 0.01))
        w = 1.0 / (sigma * sigma)
        self._normal += w * np.eye(3)
        self._rhs += w * mean

    def _solve_only(self) -> FloatArray:
        return self._solve() if self.value is None else self.value

    def _solve(self) -> FloatArray:
        prior = self._sum / self._seconds if self._seconds > 0 else np.zeros(3)
        w = 1.0 / (PRIOR_SIGMA * PRIOR_SIGMA)
        out = np.linalg.solve(self._normal + w * np.eye(3), self._rhs + w * prior)
        return np.asarray(out, dtype=np.float64)
