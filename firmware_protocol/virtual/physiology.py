"""The person under the bar: tremor, sway and how hard the plates meet the floor.

A person never holds anything still. Three movements ride on every hold the motion model
schedules (setup, lockout, the bottom between reps, the rests), and on the reps too:

Physiological tremor
    8-12 Hz, narrow-band: three sines near the lifter's own tremor frequency, random
    phases, on every translational and rotational channel. Tens of micrometres and a
    tenth of a milliradian, but 0.035-0.1 m/s² and 0.0055-0.0095 rad/s RMS per axis,
    which is what an accelerometer and a gyroscope on the hands see.
Postural sway
    0.1-1 Hz: two sines per channel, millimetres to a centimetre horizontally (a third of
    that vertically), and a slow rotation of what is held of a few tenths of a degree to
    about a degree and a half RMS (0.05-0.5 Hz).
Bar vibration
    The plates meeting the floor (a deadlift touchdown, a hip thrust's bottom) or the bar
    meeting the rack's hooks ring the bar: a 10-30 Hz oscillation of a few m/s² that dies
    away in a tenth of a second or two, with a shorter 35-60 Hz plate rattle after it.

What a sensor then reads over a "still" tenth of a second (the sensor's own noise on top)
spans 0.1-0.3 m/s² per accelerometer axis and 0.015-0.025 rad/s, the range real
recordings of a held bar show. A :class:`Lifter` fixes the amplitudes for one person;
:meth:`Lifter.random` draws one from calm to shaky.

Everything here is exact kinematics: each movement comes as position, velocity and
acceleration (or angle, rate and its derivative) in closed form, so the IMU model
integrates nothing numerically. A hold's movement is switched on and off by a gain that
changes smoothly (a minimum-jerk step over 0.3 s): a bar lying on the floor or on the
hooks, touched by nobody, is still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "STILL",
    "GainProfile",
    "Lifter",
    "Oscillation",
    "Ring",
    "modulate",
    "oscillations",
    "ring",
]

FloatArray = NDArray[np.float64]
Kinematics = tuple[FloatArray, FloatArray, FloatArray]
GRIP_RAMP_S = 0.3
"""How long a gain change (taking hold of the bar, letting go) takes, s."""

_TREMOR_HZ = (8.0, 12.0)
_SWAY_HZ = (0.1, 1.0)
_ROTATION_SWAY_HZ = (0.05, 0.5)
_RATTLE_HZ = (35.0, 60.0)
# Calm and shaky ends of the draw (RMS per axis); the geometric mean is a typical lifter.
_CALM = {"tremor_mps2": 0.035, "tremor_radps": 0.0055, "sway_m": 0.002, "sway_deg": 0.3}
_SHAKY = {"tremor_mps2": 0.10, "tremor_radps": 0.0095, "sway_m": 0.010, "sway_deg": 1.2}
_LIMITS = {
    "tremor_mps2": 1.0,
    "tremor_radps": 0.2,
    "sway_m": 0.05,
    "sway_deg": 5.0,
    "touchdown_mps2": 30.0,
}
# The pelvis is a big segment carried by both legs: the hands' tremor barely reaches
# the sacrum, and it turns less than a bar held in the hands.
_PELVIS_TREMOR = 0.4
_PELVIS_ROTATION = 0.5


@dataclass(frozen=True, slots=True)
class Lifter:
    """How unsteady one person is; every amplitude is RMS per axis, SI units but degrees.

    ``tremor_*`` and ``sway_*`` are what a sensor on the bar in the hands sees (on the
    pelvis the tremor is 0.4 times and the slow rotation half as large). ``touchdown_mps2``
    is the peak vertical acceleration of the bar's ringing when the plates bounce off the
    floor in a touch-and-go deadlift; gentler contacts ring a fraction of it. The default,
    all zeros, is a statue (:data:`STILL`): the motion model's holds are then exact.
    """

    tremor_mps2: float = 0.0
    tremor_radps: float = 0.0
    sway_m: float = 0.0
    sway_deg: float = 0.0
    touchdown_mps2: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            limit = _LIMITS[f.name]
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"Lifter.{f.name} = {value!r}: must be a finite number")
            if not 0.0 <= value <= limit:
                raise ValueError(f"Lifter.{f.name} = {value!r}: allowed 0..{limit:g}")

    @property
    def still(self) -> bool:
        """True for a statue: no tremor, no sway, no ringing."""
        return not any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def random(cls, rng: np.random.Generator) -> Lifter:
        """A lifter from calm to shaky: one steadiness draw sets all amplitudes (log scale),
        each then varied by 15 % on its own; how hard the bar is dropped is drawn apart."""
        shaky = float(rng.random())
        values = {}
        for name, calm in _CALM.items():
            typical = calm * (_SHAKY[name] / calm) ** shaky
            values[name] = typical * math.exp(float(np.clip(rng.normal(0.0, 0.15), -0.4, 0.4)))
        return cls(**values, touchdown_mps2=float(rng.uniform(2.0, 8.0)))


STILL = Lifter()
"""A statue: the motion model without any physiology (its holds are exactly still)."""


@dataclass(frozen=True, slots=True)
class Oscillation:
    """A sum of sines on one channel: ``Σ amplitude_k sin(omega_k t + phase_k)``."""

    amplitude: FloatArray  # (K,) m or rad
    omega: FloatArray  # (K,) rad/s
    phase: FloatArray  # (K,) rad

    def evaluate(self, t: FloatArray) -> Kinematics:
        """Value, first and second time derivative at times ``t`` (n,)."""
        p, v, a = np.zeros_like(t), np.zeros_like(t), np.zeros_like(t)
        for amp, omega, phase in zip(self.amplitude, self.omega, self.phase, strict=True):
            arg = omega * t + phase
            sn, cs = np.sin(arg), np.cos(arg)
            p += amp * sn
            v += amp * omega * cs
            a -= amp * omega**2 * sn
        return p, v, a


class GainProfile:
    """A level from 0 to 1 that changes in minimum-jerk steps of :data:`GRIP_RAMP_S`.

    Built from (time, level) events in any order; each event moves the level, from what
    it is by then, to ``level`` over ``[time, time + GRIP_RAMP_S]``.
    """

    def __init__(self, initial: float, events: list[tuple[float, float]]) -> None:
        self.initial = initial
        level = initial
        steps: list[tuple[float, float]] = []
        for t, target in sorted(events):
            if target != level:
                steps.append((t, target - level))
                level = target
        self._t0 = np.array([s[0] for s in steps], dtype=np.float64)
        self._delta = np.array([s[1] for s in steps], dtype=np.float64)
        self._done = np.concatenate([[initial], initial + np.cumsum(self._delta)])

    def evaluate(self, t: FloatArray) -> Kinematics:
        """Gain and its first two derivatives at sorted times ``t`` (n,)."""
        g = self._done[np.searchsorted(self._t0 + GRIP_RAMP_S, t, side="right")].astype(float)
        dg, ddg = np.zeros_like(t), np.zeros_like(t)
        i0 = np.searchsorted(t, self._t0, side="left")
        i1 = np.searchsorted(t, self._t0 + GRIP_RAMP_S, side="left")
        for k in np.flatnonzero(i1 > i0):
            sl = slice(i0[k], i1[k])
            x = (t[sl] - self._t0[k]) / GRIP_RAMP_S
            # Steps still under way add their part to the ones already done.
            g[sl] += self._delta[k] * x**3 * (10 - 15 * x + 6 * x**2)
            dg[sl] += self._delta[k] * 30 * x**2 * (1 - x) ** 2 / GRIP_RAMP_S
            ddg[sl] += self._delta[k] * 60 * x * (1 - x) * (1 - 2 * x) / GRIP_RAMP_S**2
        return g, dg, ddg


def modulate(oscillation: Oscillation, gain: GainProfile, t: FloatArray) -> Kinematics:
    """``gain(t) * oscillation(t)`` with its exact derivatives, at sorted times ``t``."""
    s, ds, dds = oscillation.evaluate(t)
    g, dg, ddg = gain.evaluate(t)
    return g * s, dg * s + g * ds, ddg * s + 2 * dg * ds + g * dds


@dataclass(frozen=True, slots=True)
class Ring:
    """A struck bar's decaying oscillation on one channel, from ``t0``.

    ``amplitude * (1 - exp(-τ/rise_s))² * exp(-τ/decay_s) * sin(omega τ)`` with
    ``τ = t - t0``: it starts with zero value, velocity and acceleration (no jump for the
    IMU model to miss) and is cut once it has decayed below a millionth of its peak.
    """

    t0: float
    amplitude: float  # m or rad
    omega: float  # rad/s
    rise_s: float
    decay_s: float

    @property
    def t_end(self) -> float:
        """When the ringing is cut (s)."""
        return self.t0 + self.rise_s + 14.0 * self.decay_s

    def add_to(self, t: FloatArray, out: Kinematics) -> None:
        """Add the ringing to value, rate and second derivative at sorted times ``t``."""
        lo, hi = np.searchsorted(t, [self.t0, self.t_end], side="left")
        if hi <= lo:
            return
        tau = t[lo:hi] - self.t0
        er = np.exp(-tau / self.rise_s)
        r, dr, ddr = 1.0 - er, er / self.rise_s, -er / self.rise_s**2
        d = np.exp(-tau / self.decay_s)
        dd, ddd = -d / self.decay_s, d / self.decay_s**2
        env = r * r * d
        denv = 2 * r * dr * d + r * r * dd
        ddenv = 2 * (dr * dr + r * ddr) * d + 4 * r * dr * dd + r * r * ddd
        sn, cs = np.sin(self.omega * tau), np.cos(self.omega * tau)
        w = self.omega
        p, v, a = out
        p[lo:hi] += self.amplitude * env * sn
        v[lo:hi] += self.amplitude * (denv * sn + env * w * cs)
        a[lo:hi] += self.amplitude * (ddenv * sn + 2 * denv * w * cs - env * w * w * sn)


def _sines(
    rng: np.random.Generator, rms: float, band: tuple[float, float], count: int, *, per: float
) -> Oscillation:
    """``count`` sines in ``band`` (Hz, log-uniform) whose sum has RMS ``rms`` in the unit
    of the channel's ``per``-th derivative (0: the value itself, 2: its acceleration)."""
    freq = np.exp(rng.uniform(math.log(band[0]), math.log(band[1]), count))
    weight = rng.uniform(0.5, 1.0, count)
    weight *= math.sqrt(2.0) * rms / math.sqrt(float(np.sum(weight**2)))
    omega = 2 * math.pi * freq
    return Oscillation(weight / omega**per, omega, rng.uniform(0.0, 2 * math.pi, count))


def _tremor(
    rng: np.random.Generator, centre_hz: float, rms: float, count: int, *, per: float
) -> Oscillation:
    lo, hi = max(_TREMOR_HZ[0], centre_hz - 1.0), min(_TREMOR_HZ[1], centre_hz + 1.0)
    return _sines(rng, rms, (lo, hi), count, per=per)


def _join(a: Oscillation, b: Oscillation) -> Oscillation:
    return Oscillation(
        np.concatenate([a.amplitude, b.amplitude]),
        np.concatenate([a.omega, b.omega]),
        np.concatenate([a.phase, b.phase]),
    )


def oscillations(lifter: Lifter, body: str, rng: np.random.Generator) -> dict[str, Oscillation]:
    """Tremor plus sway of one body, keyed by channel (x, y, z m; yaw, pitch, roll rad).

    ``body`` is ``"bar"`` (in the hands) or ``"pelvis"``. Amplitudes as the module
    docstring; frequencies and phases are drawn from ``rng``.
    """
    tremor = 1.0 if body == "bar" else _PELVIS_TREMOR
    turn = 1.0 if body == "bar" else _PELVIS_ROTATION
    centre = float(rng.uniform(8.5, 11.0))
    out: dict[str, Oscillation] = {}
    for name in ("x", "y", "z"):
        shake = _tremor(rng, centre, tremor * lifter.tremor_mps2, 3, per=2)
        sway_rms = lifter.sway_m * (0.3 if name == "z" else 1.0)
        out[name] = _join(shake, _sines(rng, sway_rms, _SWAY_HZ, 2, per=0))
    for name in ("yaw", "pitch", "roll"):
        shake = _tremor(rng, centre, tremor * lifter.tremor_radps, 3, per=1)
        sway = _sines(rng, turn * math.radians(lifter.sway_deg), _ROTATION_SWAY_HZ, 2, per=0)
        out[name] = _join(shake, sway)
    return out


def ring(
    t0: float, peak: float, rng: np.random.Generator, *, rattle: bool = True
) -> dict[str, list[Ring]]:
    """The bar's ringing after a contact at ``t0`` with peak vertical acceleration ``peak``
    (m/s²), keyed by channel: mostly vertical, some fore-aft, and the bar rocking in pitch
    and roll; a plate rattle (35-60 Hz, shorter) follows within tens of milliseconds."""
    out: dict[str, list[Ring]] = {name: [] for name in ("x", "z", "pitch", "roll")}
    if peak <= 0:
        return out
    shares = {"z": 1.0, "x": 0.3, "pitch": 0.04, "roll": 0.03}  # rotations: rad/s² per m/s²
    freq = float(rng.uniform(10.0, 30.0))
    decay = float(rng.uniform(0.04, 0.15))
    hits = [(t0, freq, decay, 1.0)]
    for _ in range(int(rng.integers(1, 3)) if rattle else 0):
        delay, f_rattle = float(rng.uniform(0.01, 0.08)), float(rng.uniform(*_RATTLE_HZ))
        hits.append(
            (t0 + delay, f_rattle, float(rng.uniform(0.02, 0.06)), float(rng.uniform(0.3, 0.7)))
        )
    for start, f, tau, share in hits:
        omega = 2 * math.pi * f
        rise = 0.25 / f  # a quarter period to build up
        # The envelope peaks below 1 (rise and decay overlap); aim the peak at ``peak``.
        x = np.linspace(0.0, rise + 3 * tau, 400)
        top = float(np.max((1 - np.exp(-x / rise)) ** 2 * np.exp(-x / tau)))
        for name, k in shares.items():
            sign = 1.0 if rng.random() < 0.5 else -1.0
            amp = sign * k * share * peak / (omega**2 * top)
            out[name].append(Ring(start, amp, omega, rise, tau))
    return out
