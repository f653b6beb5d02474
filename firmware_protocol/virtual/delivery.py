"""How a sensor's samples reach a recording over BLE: late, jittered, lost and repeated.

A part samples at its output data rate (ODR) on its own oscillator; the firmware packs
several samples into a notification per connection event; the radio loses notifications,
mostly one at a time and now and then a few in a row; and what logs them stamps each
sample either from the sensor's clock (our firmware: sequence numbers and sensor
timestamps, mapped to the hub's clock) or on arrival (phone apps writing CSV), and the
latter repeats a sample now and then. :class:`DeliveryModel` is that chain for one
sensor; :meth:`DeliveryModel.deliver` plays it over a recording and returns which sample
each delivered row carries and its timestamp, so the samples themselves come from any
error model (:class:`firmware_protocol.virtual.imu_model.ImuSimulator`) at the instants
the part really took them.

Figures, all modelled (no datasheet covers a whole link): the ODR off nominal by up to
±0.5 % (the parts' internal oscillators), BLE connection intervals of 15-50 ms with one
notification each, 0.05-2 % of notifications starting a loss of 1-6 in a row, arrival
stamps jittered by 0.5-4 ms (1 sigma, never reordering samples), 0-1 % of samples
logged twice (at once, or a little later). Units: s, Hz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["Delivery", "DeliveryModel", "Stamps"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
Stamps = Literal["sensor", "arrival"]
_JITTER_CLIP = 0.25  # of the sample spacing: stamps jitter, but samples keep their order


@dataclass(frozen=True, slots=True)
class Delivery:
    """One sensor's delivered rows: ``t_sampled`` (n,) when the part took each sample,
    ``index`` (m,) which of them each delivered row carries (a repeat twice), ``t`` (m,)
    the rows' timestamps, s."""

    t_sampled: FloatArray
    index: IntArray
    t: FloatArray

    @property
    def lost(self) -> int:
        """Samples taken but never delivered."""
        return int(self.t_sampled.size - np.unique(self.index).size)

    @property
    def repeated(self) -> int:
        """Rows that repeat the row before them."""
        return int(np.count_nonzero(np.diff(self.index) == 0))


@dataclass(frozen=True, slots=True)
class DeliveryModel:
    """The link of one sensor; validated at construction, errors name the field.

    ``rate_hz`` is the configured ODR; the part runs ``clock_error`` (a fraction) off it.
    ``samples_per_packet`` samples share a notification; each notification starts a loss
    of 1 to ``burst_packets`` notifications with probability ``loss``. ``stamps`` says
    who stamps a sample: ``"sensor"`` (its clock: the true sampling instant) or
    ``"arrival"`` (jittered by ``jitter_s``, 1 sigma, and a sample logged twice with
    probability ``repeat``). The default is a perfect link.
    """

    rate_hz: float
    clock_error: float = 0.0
    samples_per_packet: int = 1
    loss: float = 0.0
    burst_packets: int = 1
    stamps: Stamps = "sensor"
    jitter_s: float = 0.0
    repeat: float = 0.0

    def __post_init__(self) -> None:
        checks: list[tuple[str, float, float, float]] = [
            ("rate_hz", self.rate_hz, 1.0, 10_000.0),
            ("clock_error", self.clock_error, -0.05, 0.05),
            ("loss", self.loss, 0.0, 0.5),
            ("jitter_s", self.jitter_s, 0.0, 0.1),
            ("repeat", self.repeat, 0.0, 0.5),
        ]
        for name, value, lo, hi in checks:
            if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"DeliveryModel.{name} = {value!r}: allowed {lo:g}..{hi:g}")
        for name, count in (
            ("samples_per_packet", self.samples_per_packet),
            ("burst_packets", self.burst_packets),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
                raise ValueError(f"DeliveryModel.{name} = {count!r}: a whole number 1..1000")
        if self.stamps not in ("sensor", "arrival"):
            raise ValueError(f"DeliveryModel.stamps = {self.stamps!r}: 'sensor' or 'arrival'")
        if self.stamps == "sensor" and (self.jitter_s or self.repeat):
            raise ValueError(
                "DeliveryModel: jitter_s and repeat need stamps='arrival'; a sensor's own "
                "clock and sequence numbers neither jitter nor repeat"
            )

    @classmethod
    def random(cls, rate_hz: float, rng: np.random.Generator, *, stamps: Stamps) -> DeliveryModel:
        """A link drawn from the ranges in the module docstring."""
        interval = float(rng.uniform(0.015, 0.05))
        arrival = stamps == "arrival"
        return cls(
            rate_hz=rate_hz,
            clock_error=float(rng.uniform(-0.005, 0.005)),
            samples_per_packet=max(1, round(rate_hz * interval)),
            loss=float(math.exp(rng.uniform(math.log(5e-4), math.log(2e-2)))),
            burst_packets=int(rng.integers(1, 7)),
            stamps=stamps,
            jitter_s=float(rng.uniform(0.5e-3, 4e-3)) if arrival else 0.0,
            repeat=float(rng.uniform(0.0, 0.01)) if arrival else 0.0,
        )

    @property
    def as_sensor_stamped(self) -> DeliveryModel:
        """The same radio with the sensor's own stamps: no jitter, no repeats."""
        return DeliveryModel(
            self.rate_hz,
            self.clock_error,
            self.samples_per_packet,
            self.loss,
            self.burst_packets,
        )

    def deliver(self, duration_s: float, rng: np.random.Generator) -> Delivery:
        """Play the link over ``[0, duration_s)``: the part's samples and the rows logged."""
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"duration_s = {duration_s!r}: must be a positive number of seconds")
        spacing = 1.0 / (self.rate_hz * (1.0 + self.clock_error))
        t_sampled = np.arange(0.0, duration_s, spacing)
        n = t_sampled.size
        packets = -(-n // self.samples_per_packet)
        lost = np.zeros(packets, dtype=bool)
        starts = np.flatnonzero(rng.random(packets) < self.loss)
        lengths = rng.integers(1, self.burst_packets + 1, starts.size)
        for start, length in zip(starts, lengths, strict=True):
            lost[start : start + length] = True
        index = np.flatnonzero(~lost[np.arange(n) // self.samples_per_packet])
        t = t_sampled[index]
        if self.stamps == "arrival":
            limit = _JITTER_CLIP * spacing
            t = t + np.clip(rng.normal(0.0, self.jitter_s, t.size), -limit, limit)
            twice = rng.random(index.size) < self.repeat
            later = rng.random(index.size) < 0.5  # logged again a little later, or at once
            delay = np.where(later, rng.uniform(0.1, 0.3, index.size) * spacing, 0.0)
            rows = np.repeat(np.arange(index.size), np.where(twice, 2, 1))
            second = np.r_[False, rows[1:] == rows[:-1]]
            t = t[rows] + np.where(second, delay[rows], 0.0)
            index = index[rows]
        return Delivery(t_sampled, index, t)
