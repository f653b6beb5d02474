"""Scalar channels of the motion model: a base value plus moves, oscillations and ringing.

A :class:`Channel` is built up by the choreography (moves on the incomplete beta function,
windowed sines, a lifter's tremor and sway under a gain, the bar's ringing) and compiled
into a :class:`CompiledChannel` that evaluates value, rate and second derivative exactly
at sorted times; see :mod:`firmware_protocol.virtual.motion` for how the moves are made.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special

from firmware_protocol.virtual.physiology import GainProfile, Oscillation, Ring, modulate

__all__ = ["MINJERK", "Channel", "CompiledChannel"]

FloatArray = NDArray[np.float64]
MINJERK = (2.0, 2.0)
"""Velocity-profile exponents of a minimum-jerk move."""


class Channel:
    """A scalar signal under construction: a base value plus moves and oscillations."""

    def __init__(self, base: float) -> None:
        self.base = base
        self.level = base  # value once every move scheduled so far has finished
        self.moves: list[tuple[float, float, float, float, float]] = []  # t0, T, delta, a, b
        self.waves: list[tuple[float, float, float, float, float, float]] = []
        self.layers: list[tuple[Oscillation, GainProfile]] = []  # tremor and sway
        self.rings: list[Ring] = []

    def move(
        self, t0: float, duration: float, delta: float, shape: tuple[float, float] = MINJERK
    ) -> None:
        if delta != 0.0:
            self.moves.append((t0, duration, delta, shape[0], shape[1]))
            self.level += delta

    def move_to(
        self, t0: float, duration: float, target: float, shape: tuple[float, float] = MINJERK
    ) -> None:
        self.move(t0, duration, target - self.level, shape)

    def wave(
        self, t0: float, duration: float, amplitude: float, freq_hz: float, phase: float = 0.0
    ) -> None:
        """A sine of the given amplitude, faded in and out smoothly over [t0, t0+duration]."""
        ramp = min(0.5, duration / 2)
        self.waves.append((t0, duration, amplitude, 2 * math.pi * freq_hz, phase, ramp))


def _minjerk(x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    return (
        x**3 * (10 - 15 * x + 6 * x**2),
        30 * x**2 * (1 - x) ** 2,
        60 * x * (1 - x) * (1 - 2 * x),
    )


class CompiledChannel:
    """A finished channel, evaluated exactly (value, rate, second derivative) at sorted times."""

    def __init__(self, ch: Channel) -> None:
        self.base = ch.base
        m = np.array(ch.moves, dtype=np.float64).reshape(-1, 5)
        self.t0, self.dur, self.delta, self.a, self.b = m.T
        self.t1 = self.t0 + self.dur
        self.norm = 1.0 / special.beta(self.a + 1, self.b + 1)
        order = np.argsort(self.t1, kind="stable")
        self.t1_sorted = self.t1[order]
        self.done = np.concatenate([[0.0], np.cumsum(self.delta[order])])
        self.w = np.array(ch.waves, dtype=np.float64).reshape(-1, 6)
        self.layers = tuple(ch.layers)
        self.rings = tuple(sorted(ch.rings, key=lambda r: r.t0))

    def eval(self, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        p = self.base + self.done[np.searchsorted(self.t1_sorted, t, side="right")]
        v = np.zeros_like(t)
        acc = np.zeros_like(t)
        i0 = np.searchsorted(t, self.t0, side="left")
        i1 = np.searchsorted(t, self.t1, side="left")
        for k in np.flatnonzero(i1 > i0):
            sl = slice(i0[k], i1[k])
            a, b, d, dur = self.a[k], self.b[k], self.delta[k], self.dur[k]
            u = (t[sl] - self.t0[k]) / dur
            p[sl] += d * special.betainc(a + 1, b + 1, u)
            ua, ub = u**a, (1 - u) ** b
            v[sl] += d * self.norm[k] / dur * ua * ub
            da = a * u ** (a - 1) * ub - b * ua * (1 - u) ** (b - 1)
            acc[sl] += d * self.norm[k] / dur**2 * da
        if len(self.w):
            w0, wdur = self.w[:, 0], self.w[:, 1]
            j0 = np.searchsorted(t, w0, side="left")
            j1 = np.searchsorted(t, w0 + wdur, side="left")
            for k in np.flatnonzero(j1 > j0):
                self._wave(t, slice(j0[k], j1[k]), self.w[k], (p, v, acc))
        for oscillation, gain in self.layers:
            dp, dv, da = modulate(oscillation, gain, t)
            p += dp
            v += dv
            acc += da
        for r in self.rings:
            r.add_to(t, (p, v, acc))
        return p, v, acc

    @staticmethod
    def _wave(
        t: FloatArray, sl: slice, w: FloatArray, out: tuple[FloatArray, FloatArray, FloatArray]
    ) -> None:
        p, v, acc = out
        t0, dur, amp, omega, phase, ramp = w
        tau = t[sl] - t0
        up = np.clip(tau / ramp, 0.0, 1.0)
        down = np.clip((dur - tau) / ramp, 0.0, 1.0)
        s_up, ds_up, dds_up = _minjerk(up)
        s_dn, ds_dn, dds_dn = _minjerk(down)
        win = s_up * s_dn
        dwin = (ds_up * s_dn - s_up * ds_dn) / ramp
        ddwin = (dds_up * s_dn - 2 * ds_up * ds_dn + s_up * dds_dn) / ramp**2
        arg = omega * tau + phase
        sn, cs = np.sin(arg), np.cos(arg)
        p[sl] += amp * win * sn
        v[sl] += amp * (dwin * sn + win * omega * cs)
        acc[sl] += amp * (ddwin * sn + 2 * dwin * omega * cs - win * omega**2 * sn)
