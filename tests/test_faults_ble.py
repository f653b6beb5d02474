"""Misbehaving sensors and radios: the hub recovers, counts the loss exactly, and never crashes.

Each test streams two athletes' bar sensors through one :class:`Hub` over the virtual
radio and injects a fault into the first athlete's sensor only. The firmware counts
exactly what it did to its own frames; the hub's counters must agree with it, and the
second athlete's stream must not notice a thing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from firmware_protocol import SensorConfig
from firmware_protocol.frames import SensorKind
from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.firmware import Fault, SensorProfile, VirtualSensor
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble import link as link_module
from sensorhub.ble.link import SensorLink
from sensorhub.ble.radio import Radio
from sensorhub.hub import Hub
from sensorhub.pairing import pair_sensor
from sensorhub.registry import RegisteredSensor, SensorRegistry
from sensorhub.stream import LinkState, SensorBatch
from tests.test_hub_ble import firmware, wait_for


@dataclass
class Arrivals:
    """Every batch the hub hands out, with the hub time it was handed out at."""

    by_address: dict[str, list[tuple[float, SensorBatch]]] = field(default_factory=dict)

    def __call__(self, sensor: RegisteredSensor, batch: SensorBatch) -> None:
        self.by_address.setdefault(sensor.address, []).append((time.monotonic(), batch))

    def batches(self, address: str) -> list[SensorBatch]:
        return [batch for _, batch in self.by_address.get(address, [])]

    def samples(self, address: str) -> int:
        return sum(len(batch.t) for batch in self.batches(address))

    def lateness(self, address: str, since: float = 0.0) -> npt.NDArray[np.float64]:
        """How long before its batch was handed out each batch's last sample was taken (s)."""
        return np.array(
            [at - float(batch.t[-1]) for at, batch in self.by_address[address] if at >= since]
        )


@dataclass
class Rig:
    """Two athletes' bar sensors streaming through one hub; ``faulty`` misbehaves."""

    hub: Hub
    arrivals: Arrivals
    faulty: VirtualSensor
    clean: VirtualSensor
    reconnects_before: dict[str, int] = field(default_factory=dict)
    """Each link's reconnects before the faults began (a busy machine can time a first
    set-up out: that is not a fault's doing)."""

    def reconnects_since(self, sensor: VirtualSensor) -> int:
        return self.link(sensor).status().reconnects - self.reconnects_before[sensor.address]

    def link(self, sensor: VirtualSensor) -> SensorLink:
        return self.hub.links[sensor.address]

    async def streaming(self, samples: int = 100) -> None:
        await wait_for(
            lambda: all(
                self.link(s).state is LinkState.STREAMING
                and self.arrivals.samples(s.address) > samples
                for s in (self.faulty, self.clean)
            ),
            15,
            "both sensors streaming",
        )

    async def settle(self, sensor: VirtualSensor) -> None:
        """Let a few good frames through, so loss at the end of a fault has been seen."""
        before = self.link(sensor).accounting.frames_received
        await wait_for(
            lambda: self.link(sensor).accounting.frames_received > before + 5,
            10,
            "good frames after the fault",
        )

    def assert_clean_untouched(self) -> None:
        """The athlete whose sensor behaved has lost nothing and noticed nothing."""
        status = self.link(self.clean).status()
        assert status.state is LinkState.STREAMING
        assert status.frames_lost == status.samples_lost == 0, status
        assert status.corrupt_frames == status.frames_dropped_by_hub == 0, status
        assert self.reconnects_since(self.clean) == 0, status
        assert self.clean.counters.samples_undelivered == 0
        assert self.arrivals.samples(self.clean.address) == status.samples_received
        assert_times_increase(self.arrivals.batches(self.clean.address))
        assert self.hub_alive()

    def hub_alive(self) -> bool:
        runner = self.hub._runner  # the one way to see that it did not crash
        return runner is not None and not runner.done()


SYNC_SLACK_S = 0.02
"""How far back a TIME_SYNC refit may move sample times: about half a round trip."""


def assert_times_increase(batches: list[SensorBatch]) -> None:
    """Sample times only go forward, but for the small steps of a clock refit."""
    steps = np.diff(np.concatenate([batch.t for batch in batches]))
    assert np.all(steps > -SYNC_SLACK_S), f"times went back {steps.min()} s at {steps.argmin()}"


def assert_exact(rig: Rig, sensor: VirtualSensor) -> None:
    """The hub's loss figures for ``sensor`` agree with what its firmware did."""
    counters = sensor.counters
    link = rig.link(sensor)
    status = link.status()
    assert status.corrupt_frames == counters.frames_corrupted
    assert status.frames_lost == (
        counters.frames_undelivered + counters.frames_corrupted + counters.frames_reordered
    )
    assert status.samples_lost == (
        counters.samples_undelivered + counters.samples_corrupted + counters.samples_reordered
    )
    assert link.accounting.duplicates == counters.frames_duplicated
    assert link.accounting.late == counters.frames_reordered
    batches = rig.arrivals.batches(sensor.address)
    assert sum(len(b.t) for b in batches) == status.samples_received
    assert sum(b.lost_before for b in batches) == status.samples_lost
    assert_times_increase(batches)


@pytest.fixture
async def air() -> VirtualRadio:
    return VirtualRadio()


@pytest.fixture
async def athletes(air: VirtualRadio) -> AsyncIterator[tuple[Emulator, Emulator]]:
    scenario = Scenario.preset("hip_thrust")
    async with (
        Emulator(scenario, seed=21, radio=air) as first,
        Emulator(scenario, seed=22, radio=air) as second,
    ):
        yield first, second


async def run_hub(
    air: VirtualRadio, state: Path, sensors: list[VirtualSensor]
) -> AsyncIterator[Rig]:
    registry = SensorRegistry(state / "sensors.json")
    async with Radio.on_virtual_radio(air, state_dir=state) as radio:
        for number, sensor in enumerate(sensors):
            await pair_sensor(
                radio, registry, sensor.address, role="bar", athlete=f"A{number}", calibrate=False
            )
        arrivals = Arrivals()
        async with Hub(radio, registry, on_batch=arrivals) as hub:
            rig = Rig(hub, arrivals, sensors[0], sensors[1])
            await rig.streaming()
            rig.reconnects_before = {s.address: rig.link(s).status().reconnects for s in sensors}
            yield rig


@pytest.fixture
async def rig(
    air: VirtualRadio, athletes: tuple[Emulator, Emulator], tmp_path: Path
) -> AsyncIterator[Rig]:
    sensors = [firmware(athletes[0], "bar"), firmware(athletes[1], "bar")]
    async for running in run_hub(air, tmp_path, sensors):
        yield running


@pytest.mark.parametrize("fault", [Fault.CORRUPT, Fault.TRUNCATED])
async def test_damaged_frames_are_counted_corrupt_and_their_samples_lost(
    rig: Rig, fault: Fault
) -> None:
    rig.faulty.fault_every = 3
    rig.faulty.faults.add(fault)
    await asyncio.sleep(1.5)
    rig.faulty.faults.discard(fault)
    await rig.settle(rig.faulty)
    assert rig.faulty.counters.frames_corrupted >= 5
    assert_exact(rig, rig.faulty)
    assert rig.reconnects_since(rig.faulty) == 0
    rig.assert_clean_untouched()


async def test_every_frame_corrupt_keeps_the_link_and_counts_all_of_it(rig: Rig) -> None:
    # Damaged frames still show the sensor is alive: no reconnect, only loss.
    rig.faulty.faults.add(Fault.CORRUPT)
    await asyncio.sleep(1.0)
    rig.faulty.faults.discard(Fault.CORRUPT)
    await rig.settle(rig.faulty)
    assert rig.faulty.counters.frames_corrupted >= 10
    assert_exact(rig, rig.faulty)
    rig.assert_clean_untouched()


async def test_reordered_frames_are_dropped_late_and_counted_lost(rig: Rig) -> None:
    rig.faulty.fault_every = 4
    rig.faulty.faults.add(Fault.REORDER)
    await asyncio.sleep(1.5)
    rig.faulty.faults.discard(Fault.REORDER)
    await rig.settle(rig.faulty)
    assert rig.faulty.counters.frames_reordered >= 5
    assert_exact(rig, rig.faulty)
    rig.assert_clean_untouched()


async def test_duplicated_frames_are_dropped_and_nothing_is_lost(rig: Rig) -> None:
    rig.faulty.fault_every = 2
    rig.faulty.faults.add(Fault.DUPLICATE)
    await asyncio.sleep(1.5)
    rig.faulty.faults.discard(Fault.DUPLICATE)
    await rig.settle(rig.faulty)
    assert rig.faulty.counters.frames_duplicated >= 5
    assert rig.link(rig.faulty).status().samples_lost == 0
    assert_exact(rig, rig.faulty)
    rig.assert_clean_untouched()


async def test_silent_sensor_is_reconnected_and_its_silence_counted_exactly(rig: Rig) -> None:
    link = rig.link(rig.faulty)
    rig.faulty.faults.add(Fault.SILENT)
    await wait_for(lambda: link.reconnects >= 1, 10, "the watchdog to drop the silent link")
    rig.faulty.faults.discard(Fault.SILENT)
    await wait_for(lambda: link.state is LinkState.STREAMING, 10, "the link back")
    await rig.settle(rig.faulty)
    assert "silent" in str(link.status().last_error)
    assert rig.faulty.counters.samples_undelivered > 0
    assert_exact(rig, rig.faulty)
    rig.assert_clean_untouched()


async def test_random_link_drops_are_survived_and_counted_exactly(rig: Rig) -> None:
    link = rig.link(rig.faulty)
    rng = random.Random(2024)
    for _ in range(8):
        # Some drops land while the link is still setting up, before data flows.
        await asyncio.sleep(rng.uniform(0.05, 0.8))
        await rig.faulty.drop_link()
    # Eight failures in a row back the link off for up to ~12 s before its next attempt.
    await wait_for(lambda: link.state is LinkState.STREAMING, 45, "the link back")
    await rig.settle(rig.faulty)
    assert link.status().reconnects >= 3
    assert rig.faulty.counters.samples_undelivered > 0
    assert_exact(rig, rig.faulty)
    rig.assert_clean_untouched()


@pytest.mark.parametrize("jump_s", [20.0, -20.0])
async def test_sensor_clock_jump_loses_nothing_and_times_recover_at_once(
    rig: Rig, jump_s: float
) -> None:
    link = rig.link(rig.faulty)
    restarts = link.accounting.restarts
    jumped_at = time.monotonic()
    rig.faulty.jump_clock(round(jump_s * 1e6))
    # The next TIME_SYNC (every 5 s) sees the jump too and refits the clock.
    await wait_for(lambda: link.sensor_clock.jumps >= 1, 8, "a TIME_SYNC after the jump")
    await rig.settle(rig.faulty)
    assert link.accounting.restarts == restarts + 1
    assert_exact(rig, rig.faulty)
    # Every sample keeps a hub time near when it was taken, the jump notwithstanding.
    lateness = rig.arrivals.lateness(rig.faulty.address, since=jumped_at)
    assert lateness.min() > -0.05, lateness.min()
    assert lateness.max() < 0.5, lateness.max()
    rig.assert_clean_untouched()


@dataclass(frozen=True)
class StillImu:
    """A sensor lying flat and still: 1 g up, no rotation."""

    def measure(self, t: npt.NDArray[np.float64], config: SensorConfig) -> npt.NDArray[Any]:
        samples = np.zeros((len(t), 6), dtype=np.int16)
        samples[:, 2] = round(32768 / config.accel_range_g)
        return samples


@pytest.mark.parametrize("drift_ppm", [600.0, -3000.0])
async def test_clock_drift_far_beyond_spec_keeps_times_and_accounting(
    air: VirtualRadio, athletes: tuple[Emulator, Emulator], tmp_path: Path, drift_ppm: float
) -> None:
    profile = SensorProfile(
        address="F2:00:00:00:00:0D",
        kind=SensorKind.IMU,
        serial="DRIFT-0001",
        clock_drift_ppm=drift_ppm,
        clock_offset_us=4_294_000_000,  # wraps within the first second
    )
    device = air.new_device(name=profile.display_name, address=profile.address)
    async with VirtualSensor(profile, device, StillImu()) as drifting:
        sensors = [drifting, firmware(athletes[1], "bar")]
        async for rig in run_hub(air, tmp_path, sensors):
            started = time.monotonic()
            await asyncio.sleep(6.0)
            assert_exact(rig, drifting)
            lateness = rig.arrivals.lateness(drifting.address, since=started)
            assert lateness.min() > -0.05, lateness.min()
            assert lateness.max() < 0.5, lateness.max()
            link = rig.link(drifting)
            assert link.accounting.restarts == 0
            assert link.status().clock_drift_ppm is not None
            rig.assert_clean_untouched()


def test_hub_times_only_go_forward_across_a_clock_refit() -> None:
    # A drift refit can map the next frame a few milliseconds back; the analysis needs
    # strictly increasing times, so the link moves such a frame just past the last sample.
    sensor = RegisteredSensor(address="F1:00:00:00:00:01", kind="imu", role="bar", athlete="A")
    link = SensorLink(None, sensor)  # type: ignore[arg-type]  # no radio needed for times
    first = link._monotonic(np.array([10.000, 10.005, 10.010]))
    second = link._monotonic(np.array([10.008, 10.013, 10.018]))  # 2 ms back
    third = link._monotonic(np.array([10.030, 10.035]))
    times = np.concatenate([first, second, third])
    assert np.all(np.diff(times) > 0)
    assert np.allclose(np.diff(second), 0.005)  # the frame's own spacing is kept
    assert second[0] - first[-1] < 1e-5
    assert np.array_equal(third, [10.030, 10.035])  # frames that follow on are untouched


class _Disconnecting:
    """A client whose disconnect takes its time, or fails as a dying Bumble link does."""

    def __init__(self, *, noise: bool = False) -> None:
        self.started = asyncio.Event()
        self.noise = noise

    async def disconnect(self) -> None:
        self.started.set()
        if self.noise:
            raise asyncio.CancelledError  # Bumble cancelling the requests of a dead link
        await asyncio.sleep(3600)


async def test_a_stop_while_a_dropped_link_disconnects_still_stops_it() -> None:
    # The link dropped, so its session ended without an exception, and the hub stopped
    # while the link was disconnecting: the stop used to be taken for the dying link's
    # noise, and the link went on reconnecting after its hub had stopped.
    client = _Disconnecting()
    task = asyncio.create_task(link_module.disconnect(client))  # type: ignore[arg-type]
    await client.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # ... while the dying link's own CancelledError is no reason to stop.
    await link_module.disconnect(_Disconnecting(noise=True))  # type: ignore[arg-type]
