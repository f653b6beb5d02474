"""Commands as they arrive from the broker: what is refused before it is carried out.

A retained command would be carried out again on every connection, and an oversized one
was read whole (and kept waiting) before its size was looked at; a flood of them filled
the MQTT client's own queue, which dropped the rest with a warning each. These tests
hold the hub to refusing them at the door, counted, logged throttled and within its
bounds, against a real mosquitto, in-process and as ``sensorhub run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_protocol.virtual.radio import VirtualRadio
from sensorhub.ble.radio import Radio
from sensorhub.config import ServiceConfig
from sensorhub.mqtt import BrokerSettings, Command, MqttPublisher, TopicTree
from sensorhub.service import Service
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


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_retained_stop_session_does_not_stop_a_session_started_later(
    tmp_path: Path, protocol: str
) -> None:
    broker = Mosquitto(tmp_path, persistence=True)  # the retained stop survives its restart
    state = tmp_path / "state"
    config = ServiceConfig(
        hub_name="rack1",
        ble="virtual",
        state_dir=state,
        broker_url=f"{broker.url}?protocol={protocol}",
        auto_start=False,
        discovery=False,
        source="test",
    )

    async def send(body: dict[str, Any], *, retain: bool = False) -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=_protocol(protocol)) as c:
            await c.publish(COMMANDS, json.dumps(body), qos=1, retain=retain)

    async with (
        broker,
        # A session the broker keeps through its restart: a reply sent before this
        # subscriber is back is held for it, not lost (the hub and it race to reconnect).
        subscribe(
            broker.port, REPLIES, reconnect=True, client_id="replies", clean_session=False
        ) as replies,
        Radio.on_virtual_radio(VirtualRadio(), state_dir=state) as radio,
        Service(config, radio=radio, mqtt_reconnect_delay_s=(0.1, 0.5)) as service,
    ):
        await _until(lambda: service.publisher.connected)
        await asyncio.sleep(0.2)  # its subscription is in place
        await send({"command": "stop_session", "id": "stale"}, retain=True)
        await send({"command": "start_session", "id": "start"})
        await replies.wait_for(lambda m: len(m) == 2)
        session = service.session
        assert session is not None
        await broker.restart()  # the hub connects again and is handed the retained stop
        await replies.wait_for(lambda m: len(m) == 3, timeout=20)
        await asyncio.sleep(0.5)
        assert service.session is session  # still recording
        assert service.store.session(session.id)["ended"] is None
        await send({"command": "stop_session", "id": "stop"})
        await replies.wait_for(lambda m: len(m) == 4)
    stale, started, again, stopped = (m.json() for m in replies.messages)
    # MQTT 3.1.1 hides the flag from a hub connected when it is sent: carried out then (no
    # session to stop); MQTT 5 shows it, so it is refused at once.
    assert stale["id"] == "stale"
    assert ("retain" if protocol == "5" else "no session is running") in stale["error"]
    assert started["id"] == "start"
    assert started["ok"], started
    assert again["id"] == "stale"
    assert "retain" in again["error"]
    assert stopped == {
        "id": "stop",
        "command": "stop_session",
        "ok": True,
        "result": {"session_id": session.id, "sets": 0, "reps": 0},
    }


async def _start_hub(broker: Mosquitto, state: Path, log: Path) -> asyncio.subprocess.Process:
    """``sensorhub run`` on its own radio of virtual sensors (none registered), no session."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
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


async def test_a_start_session_left_on_the_broker_starts_nothing_in_a_hub_that_connects(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    log = tmp_path / "hub.log"
    start = json.dumps({"command": "start_session", "id": "stale", "note": "long ago"})
    async with Mosquitto(tmp_path) as broker, subscribe(broker.port, REPLIES) as replies:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(COMMANDS, start, qos=1, retain=True)
        hub = await _start_hub(broker, state, log)
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


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_oversized_commands_are_refused_by_size_and_the_stream_stays_in_step(
    tmp_path: Path, protocol: str
) -> None:
    carried_out: list[Command] = []

    async def handler(command: Command) -> dict[str, Any]:
        carried_out.append(command)
        return {}

    v5 = protocol == "5"
    direct = "client/inbox"
    note = {"command": "start_session", "id": "big", "note": "x" * 20_000}
    async with (
        Mosquitto(tmp_path) as broker,
        subscribe(broker.port, REPLIES, direct, protocol=_protocol(protocol)) as replies,
        MqttPublisher(
            BrokerSettings.from_url(f"{broker.url}?protocol={protocol}"),
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            discovery_prefix=None,
            on_command=handler,
        ) as hub,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=_protocol(protocol)) as client,
    ):
        await _until(lambda: hub.connected)
        await asyncio.sleep(0.2)  # its subscription is in place
        properties = None
        if v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = direct
            properties.CorrelationData = b"corr-big"
        await client.publish(COMMANDS, json.dumps(note), qos=1)  # read whole, refused
        await client.publish(COMMANDS, b"{" * 3_000_000, qos=1, properties=properties)  # cut
        await client.publish(COMMANDS, b"[" * 2_000_000, qos=0)  # cut, and nothing to ack
        await client.publish(COMMANDS, b" " * 16_385, qos=1)  # one byte too many
        await client.publish(COMMANDS, json.dumps({"command": "stop_session", "id": "after"}))
        await replies.wait_for(lambda _m: len(replies.on(REPLIES)) == 5)
        if v5:
            await replies.wait_for(lambda _m: len(replies.on(direct)) == 1)
    answers = [m.json() for m in replies.on(REPLIES)]
    assert [a["error"] for a in answers[:4]] == [
        f"command is {len(json.dumps(note))} bytes; at most 16384",
        "command is 3000000 bytes; at most 16384",
        "command is 2000000 bytes; at most 16384",
        "command is 16385 bytes; at most 16384",
    ]
    assert answers[4] == {"id": "after", "command": "stop_session", "ok": True, "result": {}}
    assert [c.id for c in carried_out] == ["after"]  # the stream was read in step after them
    assert hub.stats["refused_oversized"] == 4
    assert hub.stats["reconnects"] == 0  # cut short, not disconnected
    if v5:
        (reply,) = replies.on(direct)
        assert reply.correlation == b"corr-big"
        assert reply.json()["error"] == "command is 3000000 bytes; at most 16384"


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory from /proc")
async def test_forty_commands_of_8_mb_during_a_pair_leave_the_hub_s_memory_alone(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    log = tmp_path / "hub.log"
    big = b"x" * (8 * 1024 * 1024)
    async with Mosquitto(tmp_path) as broker, subscribe(broker.port, REPLIES) as replies:
        hub = await _start_hub(broker, state, log)
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                ready = {"command": "stop_session", "id": "ready"}
                for _ in range(300):  # until the hub answers: it is connected and subscribed
                    await client.publish(COMMANDS, json.dumps(ready), qos=1)
                    with contextlib.suppress(TimeoutError):
                        await replies.wait_for(lambda m: len(m) >= 1, timeout=0.2)
                        break
                await asyncio.sleep(1.0)  # settled after start-up
                before = _rss_mb(hub.pid, "VmRSS")
                answered = len(replies.messages)
                # A pair keeps the command worker busy (no such sensor: it searches).
                pair = {"command": "pair", "address": "0A:0B:0C:0D:0E:0F", "role": "bar"}
                await client.publish(COMMANDS, json.dumps({**pair, "athlete": "A", "id": "p"}))
                for _ in range(40):
                    await client.publish(COMMANDS, big, qos=1)
            await replies.wait_for(lambda m: len(m) >= answered + 41, timeout=90)  # and the pair
            peak = _rss_mb(hub.pid, "VmHWM")
            after = _rss_mb(hub.pid, "VmRSS")
            hub.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                code = await hub.wait()
        finally:
            if hub.returncode is None:
                hub.kill()
                await hub.wait()
    assert code == 0, log.read_text()[-3000:]
    # 320 MB arrived; read whole, they took the hub from 111 to 455 MB and it stayed there.
    assert peak - before < 40, (before, peak, after)
    assert after - before < 20, (before, peak, after)
    answers = [m.json() for m in replies.messages[answered:]]
    assert [a["error"] for a in answers if a["id"] is None] == [
        "command is 8388608 bytes; at most 16384"
    ] * 40
    (paired,) = (a for a in answers if a["id"] == "p")
    assert paired["ok"] is False


async def test_a_message_whose_headers_alone_are_too_long_is_dropped(tmp_path: Path) -> None:
    carried_out: list[Command] = []

    async def handler(command: Command) -> dict[str, Any]:
        carried_out.append(command)
        return {}

    v5 = aiomqtt.ProtocolVersion.V5
    async with (
        Mosquitto(tmp_path) as broker,
        subscribe(broker.port, REPLIES, "elsewhere/#") as replies,
        MqttPublisher(
            BrokerSettings.from_url(f"{broker.url}?protocol=5"),
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            discovery_prefix=None,
            on_command=handler,
        ) as hub,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=v5) as client,
    ):
        await _until(lambda: hub.connected)
        await asyncio.sleep(0.2)  # its subscription is in place
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [("padding", "p" * 60_000)] * 2  # before the payload
        properties.ResponseTopic = "elsewhere/" + "t" * 1000  # cut off: never replied to
        await client.publish(COMMANDS, b'{"command": "stop_session"}', qos=1, properties=properties)
        await client.publish(COMMANDS, json.dumps({"command": "stop_session", "id": "after"}))
        await replies.wait_for(lambda m: len(m) == 1)
        await asyncio.sleep(0.3)
    assert [m.json()["id"] for m in replies.messages] == ["after"]
    assert [c.id for c in carried_out] == ["after"]
    assert hub.stats["reconnects"] == 0


_FLOOD = """
import sys
import paho.mqtt.client as mqtt

port, topic, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.max_inflight_messages_set(100)
client.connect("127.0.0.1", port)
client.loop_start()
for i in range(count):  # one small command for nine of 20 KB, as fast as paho sends them
    payload = b'{"command": "stop_session"}' if i % 10 == 0 else b"x" * 20_000
    sent = client.publish(topic, payload, qos=1)
sent.wait_for_publish(60)
client.disconnect()
client.loop_stop()
"""


async def test_a_flood_is_refused_at_the_door_within_bounds_and_logged_throttled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sensorhub")
    release = asyncio.Event()
    carried_out: list[str | None] = []

    async def handler(command: Command) -> dict[str, Any]:
        if command.name == "pair":
            await release.wait()  # as a real pair does, it keeps the worker busy a while
        carried_out.append(command.id)
        return {}

    pair = {"command": "pair", "address": "0A:0B:0C:0D:0E:0F", "role": "bar", "athlete": "A"}
    waiting: list[int] = []
    lateness: list[float] = []
    async with (
        Mosquitto(tmp_path) as broker,
        subscribe(broker.port, REPLIES) as replies,
        MqttPublisher(
            BrokerSettings.from_url(broker.url),
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            discovery_prefix=None,
            on_command=handler,
        ) as hub,
        aiomqtt.Client("127.0.0.1", broker.port) as client,
    ):
        await _until(lambda: hub.connected)
        await asyncio.sleep(0.2)  # its subscription is in place
        await client.publish(COMMANDS, json.dumps({**pair, "id": "hold"}), qos=1)
        await _until(lambda: hub.stats["commands"] == 1)

        async def watch() -> None:  # what the intake holds, and how late the hub's loop is
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                lateness.append(time.monotonic() - before - 0.005)
                waiting.append(hub.stats["commands_waiting"])

        watcher = asyncio.create_task(watch(), name="test intake watcher")
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _FLOOD, str(broker.port), COMMANDS, "3000"
        )
        try:
            async with asyncio.timeout(120):
                assert await flood.wait() == 0
        finally:
            if flood.returncode is None:
                flood.kill()
                await flood.wait()

        def taken() -> int:
            stats = hub.stats
            refused = stats["refused_oversized"] + stats["refused_busy"]
            return int(refused + stats["commands_waiting"])

        await _until(lambda: taken() == 3000, timeout=30)  # each one: none lost on the way
        release.set()
        await client.publish(COMMANDS, json.dumps({"command": "stop_session", "id": "after"}))
        await replies.wait_for(lambda m: any(r.json()["id"] == "after" for r in m), timeout=20)
        watcher.cancel()
    stats = hub.stats
    assert stats["refused_oversized"] == 2700
    assert stats["refused_busy"] == 300 - 32
    assert stats["most_commands_waiting"] == 32
    assert max(waiting) <= 32
    # It stayed responsive throughout: late by tens of milliseconds on an idle machine; the
    # bound leaves room for a loaded one's scheduler.
    assert max(lateness) < 2.0
    assert carried_out == ["hold", *[None] * 32, "after"]
    # Every command carried out was answered; the refusals' answers stayed within bounds.
    answers = [m.json() for m in replies.on(REPLIES)]
    assert sum(a["ok"] for a in answers) == 34
    assert stats["dropped_replies"] == 0
    assert len(answers) - 34 + stats["unanswered_refusals"] == 2968
    said = [r.getMessage() for r in caplog.records if r.name.startswith("sensorhub")]
    refusals = [line for line in said if "refused a command" in line]
    assert any("oversized so far" in line for line in refusals)
    assert any("busy so far" in line for line in refusals)
    assert len(refusals) <= 4  # the first of each kind, and at most one more in 10 s
    assert not any("queue is full" in line for line in said)
