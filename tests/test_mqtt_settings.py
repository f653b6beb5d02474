"""Broker URLs and topic names: what parses, what is refused, and what the errors say."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorhub.errors import ConfigError
from sensorhub.mqtt import BrokerSettings, TopicTree, sensor_id, slug


def test_plain_url_takes_defaults() -> None:
    settings = BrokerSettings.from_url("mqtt://broker.local")
    assert (settings.host, settings.port, settings.tls) == ("broker.local", 1883, False)
    assert settings.protocol == "3.1.1"
    assert settings.username is None
    assert settings.password is None


def test_mqtts_url_with_everything(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until connecting")
    settings = BrokerSettings.from_url(
        f"mqtts://coach:s%40cret@broker.local?protocol=5&ca={ca}&client_id=rack1"
    )
    assert (settings.host, settings.port, settings.tls) == ("broker.local", 8883, True)
    assert (settings.username, settings.password) == ("coach", "s@cret")
    assert settings.protocol == "5"
    assert settings.ca_file == ca
    assert settings.client_id == "rack1"


def test_password_argument_wins_and_never_shows() -> None:
    settings = BrokerSettings.from_url("mqtt://coach:fromurl@h:1884", password="fromenv")  # noqa: S106
    assert settings.password == "fromenv"  # noqa: S105 - the test's own value
    assert "fromenv" not in settings.redacted()
    assert "fromurl" not in settings.redacted()
    assert "fromenv" not in repr(settings)
    assert settings.redacted() == "mqtt://coach@h:1884"


def test_insecure_and_ipv6() -> None:
    settings = BrokerSettings.from_url("mqtts://[::1]:9000?insecure=1")
    assert (settings.host, settings.port, settings.insecure) == ("::1", 9000, True)
    assert settings.redacted() == "mqtts://[::1]:9000?insecure=1"
    context = settings.ssl_context()
    assert context is not None
    assert not context.check_hostname


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://broker", "scheme 'http'"),
        ("broker.local:1883", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://broker:99999", "out of range"),
        ("mqtt://broker:port", "Port could not be cast"),
        ("mqtt://broker/topic", "no path"),
        ("mqtt://broker?protocol=4.0", "protocol=3.1.1 or protocol=5"),
        ("mqtt://broker?qos=1", "unknown option 'qos'"),
        ("mqtt://broker?insecure=1", "use an mqtts:// URL"),
        ("mqtts://broker?insecure=maybe", "insecure=1 or insecure=0"),
        ("mqtts://broker?ca=/nonexistent/ca.pem", "does not exist"),
        ("mqtt://broker?keepalive=1", "5 to 3600"),
        ("mqtt://broker?keepalive=soon", "whole number"),
        ("mqtt://:secret@broker", "needs a user name"),
    ],
)
def test_bad_urls_say_what_and_how(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("?", r"\?").replace(".", r"\.")):
        BrokerSettings.from_url(url)


def test_error_never_repeats_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        BrokerSettings.from_url("mqtt://coach:hunter2@broker/path")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ann", "ann"),
        ("Zoë Müller", "zoe_muller"),
        ("a/b+c#d", "a_b_c_d"),
        ("rack-1_left", "rack-1_left"),
        ("  spaced  out ", "spaced_out"),
    ],
)
def test_slug(name: str, expected: str) -> None:
    assert slug(name) == expected


def test_slug_of_nothing_usable_is_stable_and_safe() -> None:
    assert slug("???") == slug("???")
    assert slug("???").startswith("id_")
    assert slug("???") != slug("!!!")
    with pytest.raises(ConfigError):
        slug("")


def test_topics() -> None:
    tree = TopicTree(prefix="gym/rack1", hub="hub-a")
    assert tree.hub_status == "gym/rack1/hub-a/status"
    assert tree.events == "gym/rack1/hub-a/events"
    assert tree.commands == "gym/rack1/hub-a/commands"
    assert tree.command_response == "gym/rack1/hub-a/commands/response"
    assert tree.sensor_status("AA:BB:CC:DD:EE:0F") == "gym/rack1/hub-a/sensors/aabbccddee0f/status"
    assert tree.athlete("Zoë M", "reps") == "gym/rack1/hub-a/athletes/zoe_m/reps"
    assert sensor_id("AA:BB:CC:DD:EE:0F") == "aabbccddee0f"


@pytest.mark.parametrize(
    ("prefix", "hub"),
    [
        ("", "hub"),
        ("a/#", "hub"),
        ("a//b", "hub"),
        ("/a", "hub"),
        ("a", "h/b"),
        ("a", "+"),
        ("a", ""),
    ],
)
def test_bad_topic_names_are_refused(prefix: str, hub: str) -> None:
    with pytest.raises(ConfigError, match="topic level"):
        TopicTree(prefix=prefix, hub=hub)
