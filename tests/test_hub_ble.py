"""The hub's Bluetooth side through bleak's API, on the Bumble backend, against virtual sensors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from bleak.exc import BleakError
from bumble import att, hci

from firmware_protocol import gatt as uuids
from firmware_protocol.frames import SensorKind
from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.firmware import VirtualSensor
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble.radio import Radio
from sensorhub.hub import Hub
from sensorhub.pairing import discover, pair_sensor
from sensorhub.registry import RegisteredSensor, SensorRegistry
from sensorhub.stream import LinkState, SensorBatch


@pytest.fixture
async def air() -> VirtualRadio:
    return VirtualRadio()


@pytest.fixture
async def athlete_a(air: VirtualRadio) -> AsyncIterator[Emulator]:
    async with Emulator(Scenario.preset("hip_thrust"), seed=11, radio=air) as emulator:
        yield emulator


@pytest.fixture
async def athlete_b(air: VirtualRadio) -> AsyncIterator[Emulator]:
    async with Emulator(Scenario.preset("hip_thrust"), seed=12, radio=air) as emulator:
        yield emulator


def firmware(emulator: Emulator, body: str) -> VirtualSensor:
    return next(
        s.firmware
        for s in emulator.sensors
        if s.body == body and s.firmware.profile.kind is SensorKind.IMU
    )


def registry_in(state: Path) -> SensorRegistry:
    return SensorRegistry(state / "sensors.json")


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


class Batches:
    def __init__(self) -> None:
        self.by_address: dict[str, list[SensorBatch]] = defaultdict(list)

    def __call__(self, sensor: RegisteredSensor, batch: SensorBatch) -> None:
        self.by_address[sensor.address].append(batch)

    def samples(self, address: str) -> int:
        return sum(len(b.t) for b in self.by_address[address])


async def test_scan_reports_our_sensors_and_which_are_paired(
    air: VirtualRadio, athlete_a: Emulator, tmp_path: Path
) -> None:
    registry = registry_in(tmp_path)
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        found = await discover(radio, registry, 0.6)
        expected = {s.firmware.address for s in athlete_a.sensors}
        assert set(found) == expected
        for sighting in found.values():
            assert sighting.kind is SensorKind.IMU
            assert sighting.pairing_mode
            assert not sighting.paired
            assert -100 < sighting.rssi < 0
            assert sighting.to_json().keys() >= {"address", "kind", "battery", "rssi", "paired"}
        bar = firmware(athlete_a, "bar")
        await pair_sensor(radio, registry, bar.address, role="bar", athlete="Ada")
        again = await discover(radio, registry, 0.6)
    assert again[bar.address].paired
    assert not again[firmware(athlete_a, "pelvis").address].paired


async def test_unpaired_bleak_client_gets_no_data(
    air: VirtualRadio, athlete_a: Emulator, tmp_path: Path
) -> None:
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        client = radio.client(firmware(athlete_a, "bar").address)
        await client.connect()
        with pytest.raises(BleakError, match="INSUFFICIENT_ENCRYPTION"):
            await client.start_notify(uuids.DATA_CHAR_UUID, lambda _c, _d: None)
        with pytest.raises(BleakError, match="INSUFFICIENT_ENCRYPTION"):
            await client.read_gatt_char(uuids.STATUS_CHAR_UUID)
        await client.disconnect()


async def test_pairing_bonds_and_a_restarted_hub_reuses_the_bond(
    air: VirtualRadio, tmp_path: Path
) -> None:
    # The athlete holds the neutral pose long enough for the guided calibration.
    scenario = dataclasses.replace(Scenario.preset("hip_thrust"), calibration_s=10.0)
    async with Emulator(scenario, seed=13, radio=air) as emulator:
        await _pair_then_restart(air, emulator, tmp_path)


async def _pair_then_restart(air: VirtualRadio, athlete_a: Emulator, tmp_path: Path) -> None:
    registry = registry_in(tmp_path)
    pelvis = firmware(athlete_a, "pelvis")
    lines: list[str] = []
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        entry = await pair_sensor(
            radio, registry, pelvis.address, role="pelvis", athlete="Ada", progress=lines.append
        )
    assert pelvis.counters.pairings == 1
    assert any("blinking" in line for line in lines)
    assert entry.calibration is not None
    gravity = entry.calibration["neutral_gravity_sensor"]
    assert 9.3 < sum(g * g for g in gravity) ** 0.5 < 10.3
    assert registry.get(pelvis.address) == entry
    assert (tmp_path / "bonds.json").stat().st_mode & 0o077 == 0

    # A new hub process: same state directory, a new radio, no pairing.
    batches = Batches()
    async with (
        Radio.on_virtual_radio(air, state_dir=tmp_path) as radio,
        Hub(radio, registry, on_batch=batches),
    ):
        await wait_for(lambda: batches.samples(pelvis.address) > 100, 10, "pelvis data")
    assert pelvis.counters.pairings == 1


async def test_two_athletes_stream_and_a_new_sensor_joins_without_disturbing_them(
    air: VirtualRadio, athlete_a: Emulator, athlete_b: Emulator, tmp_path: Path
) -> None:
    registry = registry_in(tmp_path)
    first = [firmware(athlete_a, "bar"), firmware(athlete_a, "pelvis"), firmware(athlete_b, "bar")]
    newcomer = firmware(athlete_b, "pelvis")
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        for sensor, athlete in zip(first, ["Ada", "Ada", "Bo"], strict=True):
            role = "pelvis" if sensor is first[1] else "bar"
            await pair_sensor(
                radio, registry, sensor.address, role=role, athlete=athlete, calibrate=False
            )
        batches = Batches()
        async with Hub(radio, registry, on_batch=batches) as hub:
            await wait_for(
                lambda: all(batches.samples(s.address) > 200 for s in first), 15, "three streams"
            )
            # A busy machine may time a first set-up out: only what the newcomer does counts.
            before = {s.address: hub.links[s.address].status().reconnects for s in first}
            paired_at = asyncio.get_running_loop().time()
            await hub.pair(newcomer.address, role="pelvis", athlete="Bo", calibrate=False)
            await wait_for(lambda: batches.samples(newcomer.address) > 0, 5, "the newcomer's data")
            joined_after = asyncio.get_running_loop().time() - paired_at
            await asyncio.sleep(1.0)
            for sensor in first:
                status = hub.links[sensor.address].status()
                assert status.state is LinkState.STREAMING
                assert status.frames_lost == status.samples_lost == 0, status
                assert status.frames_dropped_by_hub == 0
                assert sensor.counters.samples_undelivered == 0
                assert status.reconnects == before[sensor.address]
            rates = {s.address: hub.links[s.address].status().sample_rate_hz for s in first}
    assert joined_after < 5.0
    assert all(180 <= rate <= 220 for rate in rates.values()), rates


async def test_forced_disconnects_recover_and_loss_is_counted_exactly(
    air: VirtualRadio, athlete_a: Emulator, tmp_path: Path
) -> None:
    registry = registry_in(tmp_path)
    bar = firmware(athlete_a, "bar")
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        await pair_sensor(radio, registry, bar.address, role="bar", athlete="Ada", calibrate=False)
        batches = Batches()
        async with Hub(radio, registry, on_batch=batches) as hub:
            link = hub.links[bar.address]
            await wait_for(lambda: link.state is LinkState.STREAMING, 10, "streaming")
            for drop in range(4):
                await asyncio.sleep(0.4)
                await bar.drop_link()
                await wait_for(lambda: link.state is not LinkState.STREAMING, 5, "link loss")
                streamed = link.accounting.samples_received
                await wait_for(
                    lambda s=streamed: (
                        link.state is LinkState.STREAMING
                        and link.accounting.samples_received > s + 50
                    ),
                    10,
                    f"recovery {drop + 1}",
                )
            await asyncio.sleep(0.5)
            # The status and what was handed out, read together: frames keep arriving.
            status = link.status()
            handed = list(batches.by_address[bar.address])
    assert status.reconnects >= 4
    assert bar.counters.samples_undelivered > 0
    assert status.samples_lost == bar.counters.samples_undelivered
    assert status.frames_lost == bar.counters.frames_undelivered
    assert sum(len(b.t) for b in handed) == status.samples_received
    assert sum(b.lost_before for b in handed) == status.samples_lost


async def test_registry_changes_from_another_process_are_picked_up(
    air: VirtualRadio, athlete_a: Emulator, tmp_path: Path
) -> None:
    registry = registry_in(tmp_path)
    bar, pelvis = firmware(athlete_a, "bar"), firmware(athlete_a, "pelvis")
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        for sensor, role in ((bar, "bar"), (pelvis, "pelvis")):
            await pair_sensor(
                radio, registry, sensor.address, role=role, athlete="Ada", calibrate=False
            )
    pelvis_entry = registry.forget(pelvis.address)  # bonded, but not (yet) wanted

    batches = Batches()
    async with (
        Radio.on_virtual_radio(air, state_dir=tmp_path) as radio,
        Hub(radio, registry, on_batch=batches) as hub,
    ):
        await wait_for(lambda: batches.samples(bar.address) > 50, 10, "bar data")
        # Bonded but not registered: never connected.
        assert pelvis.address not in hub.links
        connections_before = pelvis.counters.connections
        await asyncio.sleep(1.0)
        assert pelvis.counters.connections == connections_before
        assert not pelvis.connected
        # Another process (e.g. `sensorhub pair`) writes the registry file.
        SensorRegistry(registry.path).put(pelvis_entry)
        await wait_for(lambda: batches.samples(pelvis.address) > 0, 5, "pelvis picked up")
        document = json.loads(registry.path.read_text())
        document["sensors"] = [s for s in document["sensors"] if s["address"] != bar.address]
        registry.path.write_text(json.dumps(document))
        await wait_for(lambda: bar.address not in hub.links, 5, "bar released")
        await wait_for(lambda: not bar.connected, 5, "bar disconnected")
        # A damaged registry is reported, and the running sensors keep streaming.
        registry.path.write_text("{not json")
        before = batches.samples(pelvis.address)
        await asyncio.sleep(1.2)
        assert batches.samples(pelvis.address) > before + 100
        assert pelvis.address in hub.links


async def test_streamed_packets_are_formatted_for_bumbles_debug_log_only_while_it_is_on(
    air: VirtualRadio,
    athlete_a: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    formatted: Counter[str] = Counter()  # by the Bumble module that asked for the text

    def counting(original: Callable[[Any], str]) -> Callable[[Any], str]:
        def to_text(packet: Any) -> str:
            formatted[Path(sys._getframe(1).f_code.co_filename).name] += 1
            return original(packet)

        return to_text

    # Notifications and data packets: what streaming is made of (the TIME_SYNC every 5 s
    # gets a write response, formatted as before).
    notification = att.ATT_Handle_Value_Notification
    monkeypatch.setattr(notification, "__str__", counting(notification.__str__))
    monkeypatch.setattr(hci.HCI_AclDataPacket, "__str__", counting(hci.HCI_AclDataPacket.__str__))
    registry = registry_in(tmp_path)
    bar = firmware(athlete_a, "bar")
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        await pair_sensor(radio, registry, bar.address, role="bar", athlete="Ada", calibrate=False)
        batches = Batches()
        async with Hub(radio, registry, on_batch=batches):
            await wait_for(lambda: batches.samples(bar.address) > 0, 10, "the first data")
            formatted.clear()
            start = batches.samples(bar.address)
            await wait_for(lambda: batches.samples(bar.address) > start + 400, 10, "2 s of data")
            quiet = dict(formatted)
            caplog.set_level(logging.DEBUG, logger="bumble.gatt_client")
            caplog.set_level(logging.DEBUG, logger="bumble.host")
            start = batches.samples(bar.address)
            await wait_for(lambda: batches.samples(bar.address) > start + 200, 10, "1 s of data")
            logged = [r.getMessage() for r in caplog.records]
    # The hub's GATT client and host (and the sensor's host) format nothing while
    # streaming with the log off...
    assert quiet.get("gatt_client.py", 0) == quiet.get("host.py", 0) == 0, quiet
    # ... and with it on, every notification and data packet is in the log as before.
    assert sum("ATT_HANDLE_VALUE_NOTIFICATION" in m and "to client" in m for m in logged) >= 5
    assert sum("CONTROLLER -> HOST" in m and "data_total_length" in m for m in logged) >= 5
