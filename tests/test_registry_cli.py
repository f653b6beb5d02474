"""The sensor registry and the CLI that manages it, end to end in real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensorhub.ble.radio import Radio
from sensorhub.cli import main
from sensorhub.errors import ConfigError, StateError
from sensorhub.hub import Hub
from sensorhub.registry import RegisteredSensor, SensorRegistry, check_address
from sensorhub.state import ENV_VAR, default_state_dir
from sensorhub.stream import SensorBatch
from tests.processes import emulate


def sensorhub(*args: str, state: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorhub", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_registry_round_trip_and_damage_is_reported(tmp_path: Path) -> None:
    registry = SensorRegistry(tmp_path / "sensors.json")
    assert registry.load() == {}
    entry = RegisteredSensor(address="f1:00:00:00:00:01", kind="imu", role="bar", athlete="Ada")
    registry.put(entry)
    assert registry.get("F1:00:00:00:00:01") is not None
    assert registry.rename("F1:00:00:00:00:01", "red clip").label == "red clip"
    with pytest.raises(ConfigError, match="no registered sensor"):
        registry.forget("F1:00:00:00:00:99")
    with pytest.raises(ConfigError, match="role"):
        RegisteredSensor(address="x", kind="imu", role="knee", athlete="Ada")  # type: ignore[arg-type]
    (tmp_path / "sensors.json").write_text('{"version": 1, "sensors": [{"address": 3}]}')
    with pytest.raises(StateError, match="damaged"):
        registry.load()


def test_a_calibration_update_keeps_what_pairing_stored(tmp_path: Path) -> None:
    registry = SensorRegistry(tmp_path / "sensors.json")
    paired = {"neutral_gravity_sensor": [0.1, 0.2, 9.8], "gyro_bias_zeroed": True}
    registry.put(
        RegisteredSensor(
            address="F1:00:00:00:00:02",
            kind="imu",
            role="pelvis",
            athlete="Ada",
            name="belt",
            calibration=paired,
        )
    )
    updated = registry.update_calibration("f1:00:00:00:00:02", {"tilt_axis_sensor": [1, 0, 0]})
    assert updated.calibration == {**paired, "tilt_axis_sensor": [1, 0, 0]}
    assert registry.get("F1:00:00:00:00:02") == updated
    assert updated.name == "belt"
    with pytest.raises(ConfigError, match="no registered sensor"):
        registry.update_calibration("F1:00:00:00:00:99", {"tilt_axis_sensor": [1, 0, 0]})


_EDITOR = """
import sys
from pathlib import Path
from sensorhub.registry import RegisteredSensor, SensorRegistry, check_address
registry = SensorRegistry(Path(sys.argv[1]))
writer = int(sys.argv[2])
for i in range(int(sys.argv[3])):
    registry.put(RegisteredSensor(
        address=f"F1:00:00:00:{writer:02X}:{i:02X}", kind="imu", role="bar", athlete="Ada"
    ))
    registry.update_calibration("F1:00:00:00:00:00", {f"writer {writer}": i})
"""


def test_changes_made_at_once_by_several_processes_all_land(tmp_path: Path) -> None:
    # `pair` in one terminal while the hub saves a learned axis: each reads the file,
    # changes it and writes it back, and without a lock the later write drops the other.
    path = tmp_path / "sensors.json"
    registry = SensorRegistry(path)
    registry.put(
        RegisteredSensor(address="F1:00:00:00:00:00", kind="imu", role="pelvis", athlete="Ada")
    )
    writers, each = 3, 30
    editors = [
        subprocess.Popen([sys.executable, "-c", _EDITOR, str(path), str(w + 1), str(each)])
        for w in range(writers)
    ]
    assert [e.wait(timeout=120) for e in editors] == [0] * writers
    sensors = registry.load()
    assert len(sensors) == 1 + writers * each
    calibration = sensors["F1:00:00:00:00:00"].calibration
    assert calibration == {f"writer {w + 1}": each - 1 for w in range(writers)}
    assert (tmp_path / "sensors.json.lock").stat().st_mode & 0o077 == 0


def test_state_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    assert default_state_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "sensorhub"


def test_sensors_list_rename_forget(tmp_path: Path) -> None:
    SensorRegistry(tmp_path / "sensors.json").put(
        RegisteredSensor(address="F1:00:00:00:00:01", kind="imu", role="pelvis", athlete="Ada")
    )
    listed = json.loads(sensorhub("sensors", "list", "--json", state=tmp_path).stdout)
    assert [(s["address"], s["role"], s["athlete"]) for s in listed] == [
        ("F1:00:00:00:00:01", "pelvis", "Ada")
    ]
    renamed = sensorhub("sensors", "rename", "F1:00:00:00:00:01", "belt", state=tmp_path)
    assert renamed.returncode == 0
    assert json.loads(sensorhub("sensors", "list", "--json", state=tmp_path).stdout)[0]["name"] == (
        "belt"
    )
    missing = sensorhub("sensors", "rename", "F1:00:00:00:00:02", "x", state=tmp_path)
    assert missing.returncode == 2
    assert "no registered sensor" in missing.stderr
    forgot = sensorhub("sensors", "forget", "F1:00:00:00:00:01", "--ble", "virtual", state=tmp_path)
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(sensorhub("sensors", "list", "--json", state=tmp_path).stdout) == []


def test_bad_ble_option_is_a_clear_error(tmp_path: Path) -> None:
    result = sensorhub("scan", "--ble", "bluetooth-please", state=tmp_path)
    assert result.returncode == 2
    assert "tcp-client:" in result.stderr
    assert "Traceback" not in result.stderr


async def test_scan_pair_then_stream_across_processes(tmp_path: Path) -> None:
    """emulate in one process; scan, pair (CLI) and a hub in others, over HCI-over-TCP."""
    # The demo with a long rest before its first set: pairing measures the gyro offset
    # with the sensor still, and on a loaded machine the processes before it can take
    # longer than the demo's 15 s before that set moves the bar.
    demo = Path(__file__).parents[1] / "firmware_protocol/virtual/scenarios/demo.toml"
    held = tmp_path / "held.toml"
    held.write_text(demo.read_text().replace("rest_before_s = 5.0", "rest_before_s = 120.0", 1))
    async with emulate("--seed", "21", "--scenario", str(held)) as (port, _process):
        ble = f"tcp-client:127.0.0.1:{port}"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return sensorhub(*args, "--ble", ble, state=tmp_path)

        scanned = await asyncio.to_thread(run, "scan", "--json", "--duration", "1.5")
        assert scanned.returncode == 0, scanned.stderr
        sensors = json.loads(scanned.stdout)
        assert len(sensors) == 2
        assert all(s["kind"] == "imu" and not s["paired"] for s in sensors)
        address = sensors[0]["address"]
        paired = await asyncio.to_thread(run, "pair", address, "--role", "bar", "--athlete", "Ada")
        assert paired.returncode == 0, paired.stderr
        assert "blinking" in paired.stderr
        rescanned = await asyncio.to_thread(run, "scan", "--json", "--duration", "1.5")
        assert {s["address"]: s["paired"] for s in json.loads(rescanned.stdout)}[address] is True

        # A hub in yet another process reuses the bond the pair command made.
        samples = 0
        enough = asyncio.Event()

        def count(_sensor: object, batch: SensorBatch) -> None:
            nonlocal samples
            samples += len(batch.t)
            if samples >= 200:
                enough.set()

        registry = SensorRegistry(tmp_path / "sensors.json")
        async with Radio(ble, state_dir=tmp_path) as radio, Hub(radio, registry, on_batch=count):
            async with asyncio.timeout(15):
                await enough.wait()


VIRTUAL = ("--ble", "virtual")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("pair", "zzz", "--role", "bar", "--athlete", "A", *VIRTUAL), "'zzz' is not a sensor"),
        (
            ("pair", "AA:BB:CC:DD:EE:FF", "--role", "bar", "--athlete", "A", "--timeout", "-5"),
            "'-5' is not a number of seconds above 0",
        ),
        (("scan", "--duration", "nan", *VIRTUAL), "'nan' is not a number of seconds above 0"),
        (("sensors", "forget", "AA:BB:CC", *VIRTUAL), "'AA:BB:CC' is not a sensor address"),
        (("sensors", "rename", "x", "red"), "'x' is not a sensor address"),
        (
            ("scan", "--ble", "tcp-client:nohost"),
            "tcp-client takes a host and a port, tcp-client:HOST:PORT, e.g. "
            "tcp-client:127.0.0.1:7001",
        ),
        (("scan", "--ble", "tcp-client:host:port"), "tcp-client:HOST:PORT"),
        (("scan", "--ble", "usb:"), "say which device after the colon"),
    ],
)
def test_arguments_are_checked_before_anything_waits(
    tmp_path: Path, args: tuple[str, ...], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        main([*args, "--state-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
    assert time.monotonic() - started < 5  # not after a 15 s search
    assert not (tmp_path / "sensors.json").exists()


def test_a_good_uuid_or_address_passes() -> None:
    assert check_address("aa:bb:cc:dd:ee:0f") == "AA:BB:CC:DD:EE:0F"
    uuid = "0e6b2c4a-1f7d-4c2b-9d1e-2a3b4c5d6e7f"  # how macOS names a device
    assert check_address(uuid) == uuid.upper()
