"""The embedded amqtt broker: starts, carries the publisher's messages, stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from sensorhub.errors import ConfigError
from sensorhub.mqtt import BrokerSettings, EmbeddedBroker, MqttPublisher, TopicTree
from tests.mosquitto import free_port, rep, subscribe


async def test_embedded_broker_carries_the_publisher(tmp_path: Path) -> None:
    # Its usual port is taken (another broker runs there): it listens on a free one.
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        async with EmbeddedBroker(port=busy) as broker:
            assert broker.port != busy
            assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
            async with (
                subscribe(broker.port, "sensorhub/hub/#") as seen,
                MqttPublisher(
                    BrokerSettings.from_url(broker.url),
                    topics=TopicTree(),
                    outbox_path=tmp_path / "outbox.db",
                ) as hub,
            ):
                hub.publish_record(rep("Ann", 1, 1, 1.0))
                await seen.wait_for(lambda _m: bool(seen.on("sensorhub/hub/athletes/ann/reps")))
                await seen.wait_for(lambda _m: bool(seen.on("sensorhub/hub/events")))
                assert hub.connected
            port = broker.port
    # Stopped: the port is free again.
    with contextlib.closing(socket.socket()) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    await asyncio.sleep(0)


async def test_embedded_broker_takes_the_port_asked_for() -> None:
    port = free_port()
    async with EmbeddedBroker(port=port) as broker:
        assert broker.url == f"mqtt://127.0.0.1:{port}"


def test_embedded_broker_stays_on_localhost() -> None:
    with pytest.raises(ConfigError, match="only listens on localhost"):
        EmbeddedBroker(host="0.0.0.0")  # noqa: S104 - the point of the test
