"""TLS with a certificate made here, and a password file: the right and the wrong password."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sensorhub.mqtt import BrokerSettings, MqttPublisher, TopicTree
from tests.mosquitto import Mosquitto, TlsFiles, make_tls_files, rep, subscribe

TREE = TopicTree("sensorhub", "rack1")
REPS = "sensorhub/rack1/athletes/ann/reps"
PASSWORD = "correct horse"  # noqa: S105 - the test broker's own


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[tuple[Mosquitto, TlsFiles]]:
    tls = make_tls_files(tmp_path)
    async with Mosquitto(tmp_path, users={"coach": PASSWORD}, tls=tls) as broker:
        yield broker, tls


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the publisher's state has no event to wait on
            await asyncio.sleep(0.02)


def hub(url: str, password: str, tmp_path: Path) -> MqttPublisher:
    return MqttPublisher(
        BrokerSettings.from_url(url, password=password),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        discovery_prefix=None,
        reconnect_delay_s=(0.1, 0.5),
    )


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_tls_and_password(
    secure: tuple[Mosquitto, TlsFiles], tmp_path: Path, protocol: str
) -> None:
    broker, tls = secure
    url = f"mqtts://coach@localhost:{broker.port}?ca={tls.ca}&protocol={protocol}"
    context = ssl.create_default_context(cafile=str(tls.ca))
    async with (
        subscribe(
            broker.port, REPS, username="coach", password=PASSWORD, tls_context=context
        ) as seen,
        hub(url, PASSWORD, tmp_path) as publisher,
    ):
        publisher.publish_record(rep("Ann", 1, 1, 1.0))
        await seen.wait_for(lambda m: len(m) == 1)
        assert publisher.connected
        assert seen.messages[0].json()["athlete"] == "Ann"


async def test_wrong_password_is_said_not_crashed(
    secure: tuple[Mosquitto, TlsFiles], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, tls = secure
    url = f"mqtts://coach@127.0.0.1:{broker.port}?ca={tls.ca}"
    with caplog.at_level(logging.WARNING, logger="sensorhub.mqtt"):
        async with hub(url, "n0t-th1s-0ne", tmp_path) as publisher:
            publisher.publish_record(rep("Ann", 1, 1, 1.0))
            await until(lambda: publisher.stats["last_error"] is not None)
            await asyncio.sleep(0.5)  # several attempts: still running, still refused
            assert not publisher.connected
            assert publisher.stats["queued"] == 2
    error = publisher.stats["last_error"]
    assert "check the user name and password" in error
    assert "n0t-th1s-0ne" not in error
    assert any("check the user name and password" in r.getMessage() for r in caplog.records)
    # Said once, not once per retry.
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1


async def test_untrusted_certificate_is_refused(
    secure: tuple[Mosquitto, TlsFiles], tmp_path: Path
) -> None:
    broker, _tls = secure
    # No ca=: the system's CAs do not know the test CA.
    async with hub(f"mqtts://coach@127.0.0.1:{broker.port}", PASSWORD, tmp_path) as publisher:
        await until(lambda: publisher.stats["last_error"] is not None)
        assert not publisher.connected
        assert "certificate" in publisher.stats["last_error"].lower()
    # insecure=1 is the explicit way round for a test broker.
    url = f"mqtts://coach@127.0.0.1:{broker.port}?insecure=1"
    async with hub(url, PASSWORD, tmp_path) as publisher:
        await until(lambda: publisher.connected)
