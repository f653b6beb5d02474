"""Virtual sensors for a scenario: the motion models wired to firmware on a virtual radio.

One :class:`Emulator` plays one athlete's scenario: an IMU sensor on each body the
exercise involves (bar, pelvis) and, on request, a bar-velocity sensor on the bar. Their
addresses, mounting rotations and clock drifts follow from the seed, so the same seed
gives the same sensors every time (a user pairs once and keeps the bond). A sensor takes
a new bond only in pairing mode: until its first bond, after :meth:`Emulator.press_buttons`,
or within ``pairing_window_s`` of power-on (PROTOCOL.md, "Security"). ``athletes``
plays the same scenario on several athletes at once (a busy gym: load and scale tests),
each with sensors of their own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from bumble import keys

from firmware_protocol.control import SensorConfig
from firmware_protocol.frames import SensorKind
from firmware_protocol.virtual.firmware import SensorProfile, VirtualSensor
from firmware_protocol.virtual.imu_model import (
    BarSensorSimulator,
    ImuSimulator,
    random_mounting,
)
from firmware_protocol.virtual.motion import Body, Trajectory
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario

MAX_DRIFT_PPM = 50.0
"""Crystal tolerance the emulated sensors draw their clock drift from (±)."""


@dataclass(frozen=True, slots=True)
class ImuSource:
    """Feeds a sensor from an IMU error model."""

    simulator: ImuSimulator

    def measure(self, t: npt.NDArray[np.float64], config: SensorConfig) -> npt.NDArray[Any]:
        """Return int16 counts (n, 6): accelerometer then gyroscope, sensor frame."""
        accel, gyro = self.simulator.measure(
            t,
            accel_range_g=config.accel_range_g,
            gyro_range_dps=config.gyro_range_dps,
            odr_hz=config.rate_hz,
        )
        return np.hstack([accel, gyro]).astype(np.int16)


@dataclass(frozen=True, slots=True)
class BarSource:
    """Feeds a sensor from a bar-velocity (position transducer) error model."""

    simulator: BarSensorSimulator

    def measure(self, t: npt.NDArray[np.float64], config: SensorConfig) -> npt.NDArray[Any]:
        """Return float (n, 2): vertical position (m) and velocity (m/s)."""
        del config  # a transducer has no ranges to honour
        position, velocity = self.simulator.measure(t)
        return np.column_stack([position, velocity])


@dataclass(frozen=True, slots=True)
class EmulatedSensor:
    """One emulated sensor: its firmware and what it is worn on."""

    firmware: VirtualSensor
    body: Body
    mounting: npt.NDArray[np.float64] | None
    athlete: int = 0
    """Which copy of the scenario's athlete wears it (0 unless ``athletes`` > 1)."""


def _address(rng: np.random.Generator) -> str:
    raw = rng.integers(0, 256, size=6)
    raw[0] |= 0xC0  # a static random address has its two top bits set
    return ":".join(f"{byte:02X}" for byte in raw)


class Emulator:
    """Virtual sensors playing one scenario on a radio; an async context manager."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        radio: VirtualRadio | None = None,
        bar_velocity: bool = False,
        clock: Callable[[], float] = time.monotonic,
        athletes: int = 1,
        pairing_window_s: float = 0.0,
        bonds: Path | None = None,
    ) -> None:
        if not 1 <= athletes <= 1000:
            raise ValueError(f"athletes = {athletes}: give 1 to 1000 copies of the athlete")
        if not pairing_window_s >= 0:
            raise ValueError(f"pairing_window_s = {pairing_window_s}: give 0 or more seconds")
        self.pairing_window_s = pairing_window_s
        """Every sensor accepts new bonds this long after power-on, bonded or not."""
        self.bonds = bonds
        """The sensors keep their bonds in this JSON file (None: in memory, lost on exit),
        as real sensors keep theirs in flash: a restarted emulator's sensors know their hubs."""
        self.scenario = scenario
        self.seed = seed
        self.radio = radio or VirtualRadio()
        self.trajectory = Trajectory.from_scenario(scenario, seed)
        self._clock = clock
        self._exit_stack = contextlib.AsyncExitStack()
        self.started_at: float | None = None
        self.started_unix: float | None = None
        self.sensors: list[EmulatedSensor] = []
        self._plan: list[tuple[SensorProfile, Body, bool, int]] = []
        taken: set[str] = set()
        for athlete in range(athletes):
            # The first athlete's sensors are those of a one-athlete emulator of this seed.
            rng = np.random.default_rng([seed, 0x5E45] + ([athlete] if athlete else []))
            wanted = [(SensorKind.IMU, body) for body in self.trajectory.bodies]
            if bar_velocity and "bar" in self.trajectory.bodies:
                wanted.append((SensorKind.BAR_VELOCITY, "bar"))
            for kind, body in wanted:
                profile = self._profile(rng, kind, body)
                while profile.address in taken:
                    profile = self._profile(rng, kind, body)
                taken.add(profile.address)
                self._plan.append((profile, body, kind is SensorKind.BAR_VELOCITY, athlete))

    @staticmethod
    def _profile(rng: np.random.Generator, kind: SensorKind, body: Body) -> SensorProfile:
        address = _address(rng)
        drift = float(rng.uniform(-MAX_DRIFT_PPM, MAX_DRIFT_PPM))
        return SensorProfile(
            address=address,
            kind=kind,
            serial=f"{body.upper()}-{address.replace(':', '')[-6:]}",
            clock_drift_ppm=drift,
            clock_offset_us=int(rng.integers(0, 2**32)),
            battery_pct=float(rng.uniform(60, 100)),
        )

    async def __aenter__(self) -> Emulator:
        self.started_at = self._clock()
        self.started_unix = time.time()
        try:
            for profile, body, is_bar_sensor, athlete in self._plan:
                await self._start_sensor(
                    profile, body, is_bar_sensor=is_bar_sensor, athlete=athlete
                )
        except BaseException:
            await self._exit_stack.aclose()
            raise
        return self

    async def _start_sensor(
        self, profile: SensorProfile, body: Body, *, is_bar_sensor: bool, athlete: int = 0
    ) -> None:
        sensor_rng = np.random.default_rng([self.seed, len(self.sensors), 0x1A0])
        mounting: npt.NDArray[np.float64] | None = None
        if is_bar_sensor:
            source: ImuSource | BarSource = BarSource(
                BarSensorSimulator(self.trajectory, rng=sensor_rng)
            )
        else:
            mounting = random_mounting(sensor_rng)
            source = ImuSource(
                ImuSimulator(self.trajectory, body, mounting=mounting, rng=sensor_rng)
            )
        device = self.radio.new_device(name=profile.display_name, address=profile.address)
        if self.bonds is not None:
            device.keystore = keys.JsonKeyStore(profile.address, str(self.bonds))
        firmware = VirtualSensor(
            profile,
            device,
            source,
            clock=self._clock,
            scenario_start=self.started_at,
            pairing_window_s=self.pairing_window_s,
        )
        await self._exit_stack.enter_async_context(firmware)
        self.sensors.append(EmulatedSensor(firmware, body, mounting, athlete))

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit_stack.aclose()

    def press_buttons(self, address: str | None = None) -> list[str]:
        """Press the button of the sensor at ``address`` (None: every sensor's); return whose.

        A pressed sensor is in pairing mode for a minute, or until it bonds: how a
        sensor already bonded to one hub takes a bond with another.
        """
        pressed = []
        for sensor in self.sensors:
            if address is None or sensor.firmware.address == address.upper():
                sensor.firmware.press_button()
                pressed.append(sensor.firmware.address)
        return pressed

    def describe(self) -> list[dict[str, Any]]:
        """One JSON-able summary per sensor: address, kind, body, drift, mounting."""
        return [
            {
                "address": sensor.firmware.address,
                "name": sensor.firmware.profile.display_name,
                "kind": sensor.firmware.profile.kind.name.lower(),
                "body": sensor.body,
                "athlete": sensor.athlete,
                "clock_drift_ppm": sensor.firmware.profile.clock_drift_ppm,
                "mounting_wxyz": None if sensor.mounting is None else sensor.mounting.tolist(),
            }
            for sensor in self.sensors
        ]

    def write_truth(self, path: Path) -> None:
        """Write the ground truth (JSON Lines), then a line describing the sensors and clock.

        Truth times are seconds since the scenario started; ``started_unix`` on the last
        line says when that was by the wall clock.
        """
        self.trajectory.truth.write_jsonl(path, self.trajectory)
        with path.open("a", encoding="utf-8") as out:
            line = {
                "type": "emulator",
                "seed": self.seed,
                "started_unix": self.started_unix,
                "sensors": self.describe(),
            }
            out.write(json.dumps(line) + "\n")
