"""The default radio on a machine without the operating system's Bluetooth, in real processes.

On Linux bleak needs BlueZ on the D-Bus system bus; the tests point the bus at a path
where nothing listens, as on a server or in a container without either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensorhub.registry import RegisteredSensor, SensorRegistry

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="BlueZ over D-Bus is Linux's")

SENSOR = "F1:00:00:00:00:01"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("scan", "--duration", "1"), id="scan"),
        pytest.param(("pair", SENSOR, "--role", "bar", "--athlete", "Ada"), id="pair"),
        pytest.param(
            ("run", "--no-ui", "--duration", "30", "--broker", "mqtt://127.0.0.1:9"), id="run"
        ),
    ],
)
def test_without_system_bluetooth_the_error_names_the_radios_to_use(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    state = tmp_path / "state"
    registry = SensorRegistry(state / "sensors.json")  # run has a sensor to look for
    registry.put(RegisteredSensor(address=SENSOR, kind="imu", role="bar", athlete="Ada"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sensorhub", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"},
    )
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("sensorhub: error: no system Bluetooth found (BlueZ: no D-Bus")
    for radio in ("--ble", "usb:0", "serial:/dev/ttyACM0", "tcp-client:HOST:PORT", "virtual"):
        assert radio in error
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30  # said at once, not after searching
