"""Security properties: who may connect, who may read, who may command (see SECURITY.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from bleak.exc import BleakError

from firmware_protocol import StartStreaming
from firmware_protocol import gatt as uuids
from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.firmware import VirtualSensor
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble.bumble_backend import PairingRefusedError, hub_address
from sensorhub.ble.radio import Radio
from sensorhub.config import ServiceConfig
from sensorhub.errors import StateError
from sensorhub.hub import Hub
from sensorhub.mqtt import BrokerSettings, Command, MqttPublisher, TopicTree
from sensorhub.pairing import pair_sensor
from sensorhub.registry import SensorRegistry
from sensorhub.service import Service
from tests.mosquitto import Mosquitto, subscribe
from tests.processes import emulate
from tests.test_faults_ble import StillImu
from tests.test_hub_ble import Batches, firmware, wait_for


@pytest.fixture
async def air() -> VirtualRadio:
    return VirtualRadio()


@pytest.fixture
async def athlete(air: VirtualRadio) -> AsyncIterator[Emulator]:
    async with Emulator(Scenario.preset("hip_thrust"), seed=31, radio=air) as emulator:
        yield emulator


async def test_sensors_not_in_the_registry_are_never_connected(
    air: VirtualRadio, athlete: Emulator, tmp_path: Path
) -> None:
    registry = SensorRegistry(tmp_path / "sensors.json")
    bar, stranger = firmware(athlete, "bar"), firmware(athlete, "pelvis")
    batches = Batches()
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        await pair_sensor(radio, registry, bar.address, role="bar", athlete="Ada", calibrate=False)
        async with Hub(radio, registry, on_batch=batches) as hub:
            await wait_for(lambda: batches.samples(bar.address) > 200, 10, "bar data")
            await asyncio.sleep(0.5)  # the stranger advertises all along, in pairing mode
            assert set(hub.links) == {bar.address}
    assert stranger.counters.connections == 0
    assert stranger.counters.pairings == 0
    assert batches.samples(stranger.address) == 0


async def test_a_rogue_sensor_with_a_registered_address_but_no_bond_gets_nothing_in(
    air: VirtualRadio, tmp_path: Path
) -> None:
    registry = SensorRegistry(tmp_path / "sensors.json")
    scenario = Scenario.preset("hip_thrust")
    async with Emulator(scenario, seed=32, radio=air) as genuine_athlete:
        genuine = firmware(genuine_athlete, "bar")
        async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
            await pair_sensor(
                radio, registry, genuine.address, role="bar", athlete="Ada", calibrate=False
            )
    # The genuine sensor is gone; a rogue one takes its address (it can be read off the air).
    device = air.new_device(name=genuine.profile.display_name, address=genuine.address)
    rogue = VirtualSensor(genuine.profile, device, StillImu())
    batches = Batches()
    async with (
        rogue,
        Radio.on_virtual_radio(air, state_dir=tmp_path) as radio,
        Hub(radio, registry, on_batch=batches) as hub,
    ):
        link = hub.links[genuine.address]
        await wait_for(lambda: link.last_error is not None, 15, "the hub to give up on it")
        await asyncio.sleep(1.0)
        assert rogue.counters.connections >= 1  # it answered, but the bond did not
        assert rogue.counters.pairings == 0  # the hub never pairs on its own
        assert rogue.counters.frames_sent == 0
        assert rogue.counters.commands == 0  # not a single command reached it
        assert batches.samples(genuine.address) == 0


STILL_SCENARIO = """
name = "still"
exercise = "hip_thrust"
disturbances = false
calibration_s = 10.0
lead_out_s = 3.0

[[sets]]
rest_before_s = 240.0
reps = 1
load_kg = 60.0
rom_m = 0.24
concentric_s = 0.5
eccentric_s = 1.2
lockout_hold_s = 1.0
bottom_pause_s = 0.4
"""


def _sensorhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorhub", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_bonded_sensor_takes_no_new_bond_until_it_is_put_in_pairing_mode(
    tmp_path: Path,
) -> None:
    # PROTOCOL.md: a sensor accepts a new bond only in pairing mode. A second hub with a
    # fresh state directory paired with a sensor bonded to another hub, and got its data.
    first, second = tmp_path / "first", tmp_path / "second"
    # A long still hold first: each pair measures the gyro offset, however slow the machine.
    scenario = tmp_path / "still.toml"
    scenario.write_text(STILL_SCENARIO)
    async with emulate("--seed", "33", "--scenario", str(scenario)) as (port, emulator):
        ble = ("--ble", f"tcp-client:127.0.0.1:{port}")

        async def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(_sensorhub, *args, *ble)

        def pairing_modes(scanned: subprocess.CompletedProcess[str]) -> dict[str, bool]:
            assert scanned.returncode == 0, scanned.stderr
            return {s["address"]: s["pairing_mode"] for s in json.loads(scanned.stdout)}

        found = pairing_modes(await cli("scan", "--json", "--duration", "1.5"))
        assert set(found.values()) == {True}  # never bonded: in pairing mode
        sensor = sorted(found)[0]
        pair = ("pair", sensor, "--role", "bar", "--athlete", "Ada")
        done = await cli(*pair, "--state-dir", str(first))
        assert done.returncode == 0, done.stderr
        rescanned = await cli("scan", "--json", "--duration", "1.5", "--state-dir", str(second))
        assert pairing_modes(rescanned)[sensor] is False  # bonded now

        # The second hub is told why, and what to do, before it tries.
        refused = await cli(*pair, "--state-dir", str(second))
        assert refused.returncode == 2
        error = refused.stderr.strip().splitlines()[-1]
        assert "is not in pairing mode" in error
        assert "press its button" in error
        assert "SIGUSR1" in error
        assert "connecting" not in refused.stderr
        assert SensorRegistry(second / "sensors.json").load() == {}
        assert not (second / "bonds.json").exists()

        # Had it tried anyway, the sensor refuses the bond and serves it nothing.
        async with Radio(f"tcp-client:127.0.0.1:{port}", state_dir=second) as radio:
            client = radio.client(sensor)
            await client.connect()
            with pytest.raises(PairingRefusedError):
                await client.pair()
            with pytest.raises(BleakError, match="INSUFFICIENT_ENCRYPTION"):
                await client.read_gatt_char(uuids.STATUS_CHAR_UUID)
            await client.disconnect()

        # The button (for the emulator: SIGUSR1) puts it in pairing mode: now it bonds.
        emulator.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.5)  # advertised within a second
        found = pairing_modes(await cli("scan", "--json", "--duration", "1.5"))
        assert found[sensor] is True
        done = await cli(*pair, "--state-dir", str(second))
        assert done.returncode == 0, done.stderr
        found = pairing_modes(await cli("scan", "--json", "--duration", "1.5"))
        assert found[sensor] is False  # the bond ended the button's pairing mode
        # And the first hub keeps its bond: it is served, out of pairing mode.
        async with Radio(f"tcp-client:127.0.0.1:{port}", state_dir=first) as radio:
            client = radio.client(sensor)
            await client.connect()  # encrypts with its bond
            assert await client.read_gatt_char(uuids.STATUS_CHAR_UUID)
            await client.disconnect()


async def test_a_pair_command_names_the_missing_pairing_mode(
    air: VirtualRadio, tmp_path: Path
) -> None:
    async with (
        Mosquitto(tmp_path) as broker,
        subscribe(broker.port, f"{BASE}/commands/response") as replies,
        Emulator(Scenario.preset("hip_thrust"), seed=34, radio=air) as athlete,
    ):
        bar = firmware(athlete, "bar")
        async with Radio.on_virtual_radio(air, state_dir=tmp_path / "other") as radio:
            registry = SensorRegistry(tmp_path / "other" / "sensors.json")
            await pair_sensor(
                radio, registry, bar.address, role="bar", athlete="X", calibrate=False
            )
        assert not bar.pairing_mode
        config = ServiceConfig(
            hub_name="rack1", ble="virtual", state_dir=tmp_path / "hub",
            broker_url=broker.url, auto_start=False, source="test",
        )  # fmt: skip
        async with (
            Radio.on_virtual_radio(air, state_dir=tmp_path / "hub") as radio,
            Service(config, radio=radio) as service,
            aiomqtt.Client("127.0.0.1", broker.port) as client,
        ):
            await wait_for(lambda: service.publisher.connected, 10, "the hub on the broker")
            await asyncio.sleep(0.3)
            pair = {"command": "pair", "address": bar.address, "role": "bar", "athlete": "Ada"}
            await client.publish(f"{BASE}/commands", json.dumps({**pair, "id": "p"}), qos=1)
            await replies.wait_for(lambda m: len(m) == 1, timeout=30)
            reply = replies.messages[0].json()
            assert reply["ok"] is False
            assert "is not in pairing mode" in reply["error"]
            assert "press its button" in reply["error"]
            assert bar.counters.pairings == 1  # the other hub's; none from this one
            assert bar.counters.pairings_refused == 0  # told before it tried
            # Its button pressed, it takes this hub's bond too.
            bar.press_button()
            await service.hub.pair(bar.address, role="bar", athlete="Ada", calibrate=False)
        assert bar.counters.pairings == 2
        assert not bar.pairing_mode  # the bond ended the button's pairing mode


async def test_data_status_and_control_point_need_an_encrypted_link(
    air: VirtualRadio, athlete: Emulator, tmp_path: Path
) -> None:
    bar = firmware(athlete, "bar")
    async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
        client = radio.client(bar.address)
        await client.connect()
        for attempt in (
            client.start_notify(uuids.DATA_CHAR_UUID, lambda _c, _d: None),
            client.start_notify(uuids.CONTROL_POINT_UUID, lambda _c, _d: None),
            client.read_gatt_char(uuids.STATUS_CHAR_UUID),
            client.write_gatt_char(uuids.CONTROL_POINT_UUID, bytes(StartStreaming(1)), True),
        ):
            with pytest.raises(BleakError, match="INSUFFICIENT_ENCRYPTION"):
                await attempt
        await client.disconnect()
    assert bar.counters.commands == 0
    assert bar.config.streaming is False


async def test_state_directory_and_bond_store_are_private(
    air: VirtualRadio, athlete: Emulator, tmp_path: Path
) -> None:
    state = tmp_path / "fresh" / "state"  # made by the hub itself
    registry = SensorRegistry(state / "sensors.json")
    async with Radio.on_virtual_radio(air, state_dir=state) as radio:
        for body in ("bar", "pelvis"):  # a second bond rewrites the store
            sensor = firmware(athlete, body)
            await pair_sensor(
                radio, registry, sensor.address, role=body, athlete="Ada", calibrate=False
            )
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "bonds.json").stat().st_mode) == 0o600
    assert len(json.loads((state / "bonds.json").read_text())) >= 1


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode)
        for path in [root, *root.rglob("*")]
    }


async def test_everything_in_the_state_directory_is_its_owner_s_alone(tmp_path: Path) -> None:
    # Made before this held, or copied in: others may read it; the hub makes it private.
    state = tmp_path / "state"
    state.mkdir()
    (state / "hub-address").write_text("C0:11:22:33:44:55\n")
    (state / "backup").mkdir()
    (state / "backup" / "sensors.json").write_text("{}\n")
    for path, mode in ((state, 0o755), (state / "backup", 0o755)):
        path.chmod(mode)
    for path in (state / "hub-address", state / "backup" / "sensors.json"):
        path.chmod(0o644)
    log = tmp_path / "hub.log"
    async with Mosquitto(tmp_path) as broker, subscribe(broker.port, f"{BASE}/status") as status:
        with log.open("ab") as out:
            hub = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sensorhub",
                "run",
                "--no-ui",
                "--ble",
                "virtual",
                "--broker",
                broker.url,
                "--hub-name",
                "rack1",
                "--state-dir",
                str(state),
                stdout=out,
                stderr=out,
            )
        try:
            await status.wait_for(lambda m: any(b'"online"' in x.payload for x in m), 60)
            await wait_for(lambda: "running" in log.read_text(), 30, "the hub to run")
            # Recording: the session store and the outbox have their WAL and shared memory.
            wanted = ["sessions.db-wal", "sessions.db-shm", "outbox.db-wal", "outbox.db-shm"]
            await wait_for(lambda: all((state / n).exists() for n in wanted), 20, "the WALs")
            running = _modes(state)
            hub.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                code = await hub.wait()
        finally:
            if hub.returncode is None:
                hub.kill()
                await hub.wait()
    assert code == 0, log.read_text()[-3000:]
    assert {"sessions.db", "outbox.db", "hub-address", *wanted} <= set(running)
    for modes in (running, _modes(state)):
        directories = {name for name in modes if (state / name).is_dir()}
        assert {name: modes[name] for name in directories} == dict.fromkeys(directories, 0o700)
        files = set(modes) - directories
        assert {name: modes[name] for name in files} == dict.fromkeys(files, 0o600)
    said = log.read_text()
    assert "readable by others; made it its owner's alone" in said
    assert ". 0755" in said
    assert "hub-address 0644" in said
    assert "backup/sensors.json 0644" in said


_BONDER = """
import asyncio, sys
from bumble import keys
from bumble.hci import Address
from sensorhub.ble.bumble_backend import _PrivateKeyStore
store = _PrivateKeyStore("C0:00:00:00:00:01", sys.argv[1])
writer = int(sys.argv[2])

async def bond_all() -> None:
    for i in range(int(sys.argv[3])):
        ltk = keys.PairingKeys.Key(value=bytes([writer, i]) * 8, authenticated=False)
        bond = keys.PairingKeys(address_type=Address.RANDOM_DEVICE_ADDRESS, ltk=ltk)
        await store.update(f"F1:00:00:00:{writer:02X}:{i:02X}/R", bond)

asyncio.run(bond_all())
"""


def test_bonds_made_at_once_by_several_processes_all_land(tmp_path: Path) -> None:
    # `pair` bonding while a running hub bonds another sensor: Bumble's own store reads,
    # changes and rewrites the file through one fixed temporary name; bonds were lost.
    path = tmp_path / "bonds.json"
    writers, each = 3, 25
    bonders = [
        subprocess.Popen([sys.executable, "-c", _BONDER, str(path), str(w + 1), str(each)])
        for w in range(writers)
    ]
    assert [b.wait(timeout=120) for b in bonders] == [0] * writers
    bonds = json.loads(path.read_text())["C0:00:00:00:00:01"]
    assert len(bonds) == writers * each
    assert bonds["F1:00:00:00:02:07/R"]["ltk"]["value"] == bytes([2, 7]).hex() * 8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


_ADDRESSER = """
import sys, time
from pathlib import Path
from sensorhub.ble.bumble_backend import PairingRefusedError, hub_address
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at the same moment
print(hub_address(Path(sys.argv[1])))
"""


def _no_hard_links(*_args: object) -> None:
    raise PermissionError(1, "Operation not permitted")


def test_the_hub_address_is_made_once_and_a_damaged_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bonds are kept under the hub's address: a hub and `pair` started at once on a
    # new state directory must agree on it, and a damaged one must not become a new one.
    state = tmp_path / "state"
    at = time.time() + 5.0  # once every process has imported
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", _ADDRESSER, str(state), str(at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    addresses = {p.communicate(timeout=60)[0].strip() for p in starters}
    assert len(addresses) == 1
    assert (state / "hub-address").read_text().strip() in addresses
    assert sorted(p.name for p in state.iterdir()) == ["hub-address"]
    assert stat.S_IMODE((state / "hub-address").stat().st_mode) == 0o600
    elsewhere = tmp_path / "no-hard-links"  # e.g. a FAT stick: made by exclusive create
    monkeypatch.setattr(os, "link", _no_hard_links)
    assert hub_address(elsewhere) == hub_address(elsewhere)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["hub-address"]
    assert stat.S_IMODE((elsewhere / "hub-address").stat().st_mode) == 0o600
    (state / "hub-address").write_text("C0:11:22\n")  # cut short
    with pytest.raises(StateError, match=r"hub-address is damaged.*pair every sensor again"):
        hub_address(state)
    assert (state / "hub-address").read_text() == "C0:11:22\n"  # left for the user


# MQTT commands --------------------------------------------------------------------------

TREE = TopicTree("sensorhub", "rack1")
BASE = "sensorhub/rack1"


async def test_commands_are_taken_only_from_the_configured_topic(tmp_path: Path) -> None:
    carried_out: list[Command] = []

    async def handler(command: Command) -> dict[str, Any]:
        carried_out.append(command)
        return {"done": command.name}

    command = json.dumps({"command": "set_load", "athlete": "Ann", "load_kg": 80, "id": "x"})
    elsewhere = [
        f"{BASE}/commands/x",
        f"{BASE}/commands/response",
        f"{BASE}/Commands",
        f"{BASE}/athletes/ann/commands",
        "sensorhub/rack2/commands",
        "sensorhub/rack1",
        "commands",
    ]
    async with Mosquitto(tmp_path) as broker:
        publisher = MqttPublisher(
            BrokerSettings.from_url(broker.url),
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            discovery_prefix=None,
            on_command=handler,
            reconnect_delay_s=(0.1, 1.0),
        )
        async with (
            subscribe(broker.port, f"{BASE}/commands/response") as replies,
            publisher as hub,
            aiomqtt.Client("127.0.0.1", broker.port) as client,
        ):
            await wait_for(lambda: hub.connected, 10, "the hub on the broker")
            await asyncio.sleep(0.2)  # its subscription is in place
            for topic in elsewhere:
                await client.publish(topic, command, qos=1)
            await asyncio.sleep(0.5)
            assert carried_out == []
            await client.publish(f"{BASE}/commands", command, qos=1)
            await replies.wait_for(lambda _m: True)
            await asyncio.sleep(0.3)
    assert [c.name for c in carried_out] == ["set_load"]
    answers = [m.json() for m in replies.on(f"{BASE}/commands/response")]
    # The command published on the response topic itself is there too, but unanswered.
    assert [a["id"] for a in answers if "ok" in a] == ["x"]
