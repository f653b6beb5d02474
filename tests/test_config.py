"""The service configuration: TOML in, validated values out, errors that name the problem."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorhub.cli import main
from sensorhub.config import AthleteSettings, ServiceConfig
from sensorhub.errors import ConfigError

FULL = """
[hub]
name = "rack-1"
ble = "tcp-client:127.0.0.1:7001"
state_dir = "~/hub-state"
imu_rate_hz = 400
bar_rate_hz = 200

[mqtt]
url = "mqtts://coach@broker.local"
password_env = "GYM_MQTT_PASSWORD"
prefix = "gym/sensorhub"
live_rate_hz = 5
discovery = false
discovery_prefix = "ha"
embedded_port = 0

[analysis]
velocity_loss_alert_pct = 25
set_gap_s = 30

[session]
auto_start = false
exercise = "squat"

[athletes.Ada]
exercise = "deadlift"
load_kg = 140

[athletes.Bo]
load_kg = 60.5
"""


def test_every_key_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GYM_MQTT_PASSWORD", "s3cret")
    config = ServiceConfig.from_toml(FULL, source="gym.toml")
    assert config.hub_name == "rack-1"
    assert config.ble == "tcp-client:127.0.0.1:7001"
    assert config.state_dir == Path("~/hub-state").expanduser()
    assert (config.imu_rate_hz, config.bar_rate_hz) == (400, 200)
    assert config.broker_url == "mqtts://coach@broker.local"
    assert config.mqtt_password == "s3cret"  # noqa: S105 - the test's own value
    assert config.mqtt_prefix == "gym/sensorhub"
    assert config.live_rate_hz == 5.0
    assert not config.discovery
    assert config.discovery_prefix == "ha"
    assert config.embedded_port == 0
    assert (config.velocity_loss_alert_pct, config.set_gap_s) == (25.0, 30.0)
    assert not config.auto_start
    assert config.athlete("Ada") == AthleteSettings("deadlift", 140.0)
    assert config.athlete("Bo") == AthleteSettings("squat", 60.5)  # the session's exercise
    assert config.athlete("Cy") == AthleteSettings("squat", None)


def test_defaults_without_a_file() -> None:
    config = ServiceConfig.load(None)
    assert config.broker_url is None  # an embedded broker
    assert config.live_rate_hz == 10.0
    assert config.auto_start


def test_overrides_win_and_are_validated() -> None:
    config = ServiceConfig.from_toml(FULL, source="gym.toml")
    changed = config.with_overrides(broker_url="mqtt://localhost:1884", live_rate_hz=None)
    assert changed.broker_url == "mqtt://localhost:1884"
    assert changed.live_rate_hz == 5.0
    with pytest.raises(ConfigError, match=r"gym.toml with command-line options: \[mqtt\] url"):
        config.with_overrides(broker_url="http://localhost")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hub]\nname = 'a b'", r"\[hub\] name = 'a b'"),
        ("[hub]\nnmae = 'x'", r"unknown key 'nmae' in \[hub\]"),
        ("[mqtt]\nlive_rate_hz = 0", r"\[mqtt\] live_rate_hz = 0.0: allowed 0.1 to 100"),
        ("[mqtt]\nlive_rate_hz = 'fast'", r"live_rate_hz = 'fast': must be a number"),
        ("[mqtt]\ndiscovery = 1", r"discovery = 1: must be true or false"),
        ("[mqtt]\nurl = 'tcp://x'", r"must start with mqtt:// or mqtts://"),
        ("[mqtt]\nprefix = 'a/#'", r"\[mqtt\] prefix = 'a/#'"),
        ("[hub]\nble = 'bluetooth'", r"\[hub\] ble: --ble 'bluetooth'"),
        ("[hub]\nimu_rate_hz = 5", r"imu_rate_hz = 5: allowed 10 to 1600"),
        ("[athletes.Ada]\nexercise = 'curl'", r"\[athletes.Ada\] exercise = 'curl': one of"),
        ("[athletes.Ada]\nload_kg = -5", r"load_kg = -5.0: allowed 0 to 1000"),
        ("[athletes]\nAda = 3", r"\[athletes.Ada\] must be a table"),
        ("[analysis]\nset_gap_s = 2", r"set_gap_s = 2.0: allowed 6 to 3600"),
        ("hub = 3", r"hub must be a table"),
        ("[sessions]\n", r"unknown key 'sessions' in the top level"),
        ("[hub\n", r"not valid TOML"),
    ],
)
def test_errors_name_the_file_the_key_and_the_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        ServiceConfig.from_toml(text, source="gym.toml")
    assert str(info.value).startswith("gym.toml")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ServiceConfig.load(tmp_path / "nope.toml")
    binary = tmp_path / "bad.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read config file"):
        ServiceConfig.load(binary)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        ServiceConfig.from_toml(text)


def _toml_value(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value)  # JSON strings, numbers and booleans are TOML too


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "ble", "imu_rate_hz", "state_dir", "bar_rate_hz"]),
        st.one_of(st.integers(-10, 5000), st.text(max_size=20), st.booleans(), st.floats()),
    )
)
def test_any_hub_table_gives_a_config_or_a_config_error(table: dict[str, object]) -> None:
    text = "[hub]\n" + "\n".join(f"{k} = {_toml_value(v)}" for k, v in table.items())
    with contextlib.suppress(ConfigError):
        ServiceConfig.from_toml(text)


def test_run_refuses_a_broken_config_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("[mqtt]\nlive_rate_hz = 1000\n")
    code = main(["run", "--config", str(config), "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"sensorhub: error: {config}: [mqtt] live_rate_hz = 1000.0: allowed 0.1 to 100"
    )
    assert not (tmp_path / "state").exists()  # nothing started, nothing written
    code = main(["run", "--config", str(tmp_path / "missing.toml")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
