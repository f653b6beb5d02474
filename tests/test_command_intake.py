"""Commands as they arrive from the broker: what is refused before it is carried out.

A retained command would be carried out again on every connection; these tests hold the
hub to refusing it, against a real mosquitto, in-process and as ``sensorhub run``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from sensorhub.mqtt import BrokerSettings, Command, MqttPublisher, TopicTree
from sensorhub.store import SessionStore
from tests.mosquitto import Mosquitto, subscribe

pytestmark = pytest.mark.timeout(180)

TREE = TopicTree("sensorhub", "rack1")
COMMANDS = "sensorhub/rack1/commands"
REPLIES = f"{COMMANDS}/response"


def _protocol(protocol: str) -> aiomqtt.ProtocolVersion:
    return aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the publisher's state has no event to wait on
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_retained_command_is_refused_when_the_hub_reconnects(
    tmp_path: Path, protocol: str
) -> None:
    carried_out: list[Command] = []

    async def handler(command: Command) -> dict[str, Any]:
        carried_out.append(command)
        return {}

    broker = Mosquitto(tmp_path, persistence=True)  # retained messages survive its restart
    hub = MqttPublisher(
        BrokerSettings.from_url(f"{broker.url}?protocol={protocol}"),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        discovery_prefix=None,
        on_command=handler,
        reconnect_delay_s=(0.1, 0.5),
    )
    stop = json.dumps({"command": "stop_session", "id": "once"})
    async with (
        broker,
        subscribe(broker.port, REPLIES, reconnect=True) as replies,
        hub,
    ):
        await _until(lambda: hub.connected)
        await asyncio.sleep(0.2)  # its subscription is in place
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=_protocol(protocol)) as client:
            await client.publish(COMMANDS, stop, qos=1, retain=True)
        await replies.wait_for(lambda m: len(m) == 1)
        # A broker on MQTT 3.1.1 hides the flag from a subscriber that is there when the
        # command is sent, so it is carried out then; MQTT 5 shows it, and it is refused.
        assert len(carried_out) == (0 if protocol == "5" else 1)
        await broker.restart()  # the hub reconnects; the broker still keeps the command
        await replies.wait_for(lambda m: len(m) == 2, timeout=20)
        await asyncio.sleep(0.5)
        assert len(carried_out) == (0 if protocol == "5" else 1)  # not carried out again
        refusal = replies.messages[-1].json()
        assert refusal["ok"] is False
        assert (refusal["id"], refusal["command"]) == ("once", "stop_session")
        assert "retain" in refusal["error"]
        assert COMMANDS in refusal["error"]  # where to clear it
        # Clearing it (an empty retained message) is not a command, and draws no reply.
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=_protocol(protocol)) as client:
            await client.publish(COMMANDS, b"", qos=1, retain=True)
            await client.publish(COMMANDS, json.dumps({"command": "stop_session", "id": "n"}))
        await replies.wait_for(lambda m: len(m) == 3)
        assert replies.messages[-1].json()["id"] == "n"
        await broker.restart()  # nothing is kept now: nothing comes back
        await _until(lambda: hub.connected, timeout=20)
        await asyncio.sleep(1.0)
    assert len(replies.messages) == 3
    assert [c.id for c in carried_out] == (["n"] if protocol == "5" else ["once", "n"])


async def test_a_start_session_left_on_the_broker_starts_nothing_in_a_hub_that_connects(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    log = tmp_path / "hub.log"
    start = json.dumps({"command": "start_session", "id": "stale", "note": "long ago"})
    async with Mosquitto(tmp_path) as broker, subscribe(broker.port, REPLIES) as replies:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(COMMANDS, start, qos=1, retain=True)
        with log.open("ab") as out:
            hub = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sensorhub",
                "run",
                "--no-ui",
                "--no-session",
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
            await replies.wait_for(lambda m: len(m) >= 1, timeout=60)
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish(COMMANDS, b"", qos=1, retain=True)  # cleared
                await client.publish(COMMANDS, json.dumps({"command": "stop_session", "id": "n"}))
            await replies.wait_for(lambda m: len(m) >= 2, timeout=20)
            await asyncio.sleep(0.5)
            hub.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                code = await hub.wait()
        finally:
            if hub.returncode is None:
                hub.kill()
                await hub.wait()
    assert code == 0, log.read_text()[-3000:]
    stale, live = (m.json() for m in replies.messages)
    assert stale["id"] == "stale"
    assert stale["ok"] is False
    assert "retain" in stale["error"]
    assert live["id"] == "n"
    assert "no session is running" in live["error"]  # the stale one started none
    assert len(replies.messages) == 2  # the empty payload that cleared it drew no reply
    store = SessionStore.open_readonly(SessionStore.path_in(state))
    try:
        assert store.sessions() == []
    finally:
        store.close()
