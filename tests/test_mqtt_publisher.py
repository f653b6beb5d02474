"""The publisher against a real mosquitto: topics, schemas, retained state, discovery, commands."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensorhub.errors import CommandError
from sensorhub.mqtt import BrokerSettings, Command, MqttPublisher, Outbox, TopicTree, schema
from sensorhub.records import AthleteStates
from tests.mosquitto import (
    Mosquitto,
    Received,
    alert,
    rep,
    sensor_status,
    session,
    set_,
    subscribe,
    tilt,
    velocity,
)

TREE = TopicTree("sensorhub", "rack1")
BASE = "sensorhub/rack1"
ANN = f"{BASE}/athletes/ann"
SENSOR = "AA:BB:CC:DD:EE:01"
SENSOR_TOPIC = f"{BASE}/sensors/aabbccddee01/status"


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The publisher logs errors only for what the test provokes: none here."""
    yield
    errors = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR
        and r.name.startswith("sensorhub")
        and "command forget failed" not in r.getMessage()  # provoked by the command test
    ]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with Mosquitto(tmp_path) as mosquitto:
        yield mosquitto


def publisher(broker: Mosquitto, tmp_path: Path, **options: Any) -> MqttPublisher:
    protocol = options.pop("protocol", "3.1.1")
    return MqttPublisher(
        BrokerSettings.from_url(f"{broker.url}?protocol={protocol}"),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        hub_info={"version": "9.9", "session_id": None},
        reconnect_delay_s=(0.1, 1.0),
        **options,
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the publisher's state has no event to wait on
            await asyncio.sleep(0.02)


def schema_for(message: Received) -> str | None:
    """Which schema a message on the sensorhub tree must follow."""
    leaf = message.topic.rsplit("/", 1)[-1]
    if message.topic == f"{BASE}/status":
        return "hub_status"
    if message.topic.startswith(f"{BASE}/sensors/"):
        return "sensor_status"
    if message.topic == f"{BASE}/events":
        return str(message.json()["type"])
    if message.topic == f"{BASE}/commands/response":
        return "command_response"
    return {
        "tilt": "tilt",
        "velocity": "velocity",
        "reps": "rep",
        "sets": "set",
        "last_set": "set",
        "alerts": "alert",
        "state": "athlete_state",
    }.get(leaf)


def with_states(hub: MqttPublisher) -> Callable[[dict[str, Any]], None]:
    """Publish a record and, as the pipeline does, the athlete state it changes."""
    states = AthleteStates()

    def publish(record: dict[str, Any]) -> None:
        hub.publish_record(record)
        if (state := states.update(record)) is not None:
            hub.publish_record(state)

    return publish


async def test_every_topic_and_payload(broker: Mosquitto, tmp_path: Path) -> None:
    async with (
        subscribe(broker.port, f"{BASE}/#") as seen,
        publisher(broker, tmp_path, discovery_prefix=None) as hub,
    ):
        await until(lambda: hub.connected)
        publish = with_states(hub)
        publish(session("started"))
        publish(tilt("Ann", 1.0, 4.5))
        publish(velocity("Ann", 1.0, 0.4))
        publish(rep("Ann", 1, 1, 2.0))
        publish(set_("Ann", 1, 3.0, reps=1))
        publish(alert("Ann", 3.0))
        hub.publish_sensor_status(sensor_status(SENSOR))
        hub.publish_record(session("stopped"))
        await seen.wait_for(lambda _m: len(seen.on(f"{BASE}/events")) == 5)
        await seen.wait_for(lambda _m: bool(seen.on(f"{ANN}/state")))
        await seen.wait_for(lambda _m: bool(seen.on(f"{ANN}/last_set")))

    topics = {m.topic for m in seen.messages}
    assert topics == {
        f"{BASE}/status",
        f"{BASE}/events",
        SENSOR_TOPIC,
        *(f"{ANN}/{leaf}" for leaf in ("tilt", "velocity", "reps", "sets", "last_set", "alerts")),
        f"{ANN}/state",
    }
    for message in seen.messages:
        name = schema_for(message)
        assert name is not None, message.topic
        jsonschema.validate(message.json(), schema(name))
    events = [m.json() for m in seen.on(f"{BASE}/events")]
    assert [e["type"] for e in events] == ["session", "rep", "set", "alert", "session"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    state = seen.on(f"{ANN}/state")[-1].json()
    assert state["reps_in_set"] == 1
    assert state["set_index"] == 1
    assert state["last_mcv_mps"] == 0.45
    assert state["velocity_loss_pct"] == 25.0
    assert state["tilt_deg"] == 4.5
    statuses = [m.json() for m in seen.on(f"{BASE}/status")]
    assert statuses[0]["state"] == "online"
    assert statuses[0]["version"] == "9.9"
    assert statuses[-1] == statuses[-1] | {"state": "offline", "reason": "shutdown"}


async def test_retained_topics_and_clean_shutdown(broker: Mosquitto, tmp_path: Path) -> None:
    async with publisher(broker, tmp_path, discovery_prefix=None) as hub:
        publish = with_states(hub)
        publish(tilt("Ann", 1.0, 4.5))
        publish(rep("Ann", 1, 1, 2.0))
        publish(set_("Ann", 1, 3.0))
        hub.publish_sensor_status(sensor_status(SENSOR))
        await until(lambda: hub.stats["published"] > 0)
        async with subscribe(broker.port, f"{BASE}/status") as status:
            await status.wait_for(lambda m: bool(m) and m[-1].json()["state"] == "online")
            assert status.messages[0].retain
        hub.set_hub_info(session_id=7)
        await until(lambda: hub.stats["queued"] == 0)
        await asyncio.sleep(0.3)  # the retained state and session id go out right after
    async with subscribe(broker.port, f"{BASE}/#") as late:
        await late.wait_for(lambda m: len(m) >= 4)
        await asyncio.sleep(0.2)
    retained = {m.topic: m.json() for m in late.messages}
    assert all(m.retain for m in late.messages)
    assert set(retained) == {f"{BASE}/status", SENSOR_TOPIC, f"{ANN}/last_set", f"{ANN}/state"}
    assert retained[f"{BASE}/status"]["state"] == "offline"
    assert retained[f"{BASE}/status"]["reason"] == "shutdown"
    assert retained[f"{BASE}/status"]["session_id"] == 7
    assert retained[f"{ANN}/state"]["tilt_deg"] == 4.5
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert len(outbox) == 0


DISCOVERY = "homeassistant/device/+/config"
LEGACY = "homeassistant/+/+/+/config"
NODE = "sensorhub_rack1"


async def test_discovery_on_connect_and_on_birth_only(broker: Mosquitto, tmp_path: Path) -> None:
    async with (
        subscribe(broker.port, DISCOVERY) as configs,
        publisher(broker, tmp_path) as hub,
    ):
        await configs.wait_for(lambda m: len(m) == 1)  # the hub's own device, on connect
        hub.publish_record(rep("Ann", 1, 1, 2.0))  # an athlete first seen while connected
        hub.publish_sensor_status(sensor_status(SENSOR))
        await configs.wait_for(lambda m: len(m) == 3)
        first = {m.topic: m.json() for m in configs.messages}
        for i in range(2, 6):
            hub.publish_record(rep("Ann", 1, i, 2.0 + i))
            hub.publish_record(tilt("Ann", 2.0 + i, float(i)))
            hub.publish_sensor_status(
                sensor_status(SENSOR, state="backing_off" if i % 2 else "streaming")
            )
        await until(lambda: hub.stats["queued"] == 0)
        await asyncio.sleep(0.5)
        assert len(configs.messages) == 3, "updates must not send discovery again"
        async with aiomqtt.Client("127.0.0.1", broker.port) as ha:
            await ha.publish("homeassistant/status", b"offline")
            await asyncio.sleep(0.2)
            assert len(configs.messages) == 3, "only HA's 'online' sends discovery again"
            await ha.publish("homeassistant/status", b"online")
        await configs.wait_for(lambda m: len(m) == 6)
        assert {m.topic: m.json() for m in configs.messages[3:]} == first
        hub.forget_sensor(SENSOR)  # its device goes from Home Assistant with it
        gone = f"homeassistant/device/{NODE}_sensor_aabbccddee01/config"
        await configs.wait_for(lambda ms: any(m.topic == gone and not m.payload for m in ms))

    assert set(first) == {
        f"homeassistant/device/{NODE}/config",
        f"homeassistant/device/{NODE}_athlete_ann/config",
        f"homeassistant/device/{NODE}_sensor_aabbccddee01/config",
    }
    state_fields = set(schema("athlete_state")["properties"])
    sensor_fields = set(schema("sensor_status")["properties"])
    entities: dict[str, dict[str, Any]] = {}
    for config in first.values():
        # Home Assistant's device-based form: the device, the origin and the components.
        assert config["dev"]["identifiers"]
        assert config["o"]["name"] == "sensorhub"
        assert "device" not in config
        assert "components" not in config
        for component in config["cmps"].values():
            assert component["p"] in {"sensor", "binary_sensor"}
            state_topic = component.get("state_topic", config.get("state_topic"))
            assert state_topic.startswith(BASE + "/")
            field = component["value_template"].split("value_json.")[1].split()[0]
            if state_topic.endswith("/state"):
                assert field in state_fields
                assert component["state_class"] == "measurement"
            elif state_topic == SENSOR_TOPIC:
                assert field in sensor_fields
            else:
                assert state_topic == f"{BASE}/status"
                assert field == "state"
            entities[component["unique_id"]] = component
        if config["dev"]["identifiers"] != [NODE]:
            assert config["dev"]["via_device"] == NODE
            assert config["availability"][0]["topic"] == f"{BASE}/status"
            assert config["availability"][0]["value_template"] == "{{ value_json.state }}"
        else:
            assert "availability" not in config  # the hub's own entity shows "offline"
    # The entities' ids are those the per-entity configs had: Home Assistant keeps them.
    assert set(entities) == set(LEGACY_IDS.values())
    by_name = {c["name"]: c for c in entities.values()}
    assert by_name["Last mean concentric velocity"]["unit_of_measurement"] == "m/s"
    assert by_name["Velocity loss"]["unit_of_measurement"] == "%"
    assert by_name["Pelvic tilt"]["unit_of_measurement"] == "°"
    assert by_name["Battery"]["device_class"] == "battery"
    assert by_name["Connection"]["device_class"] == "connectivity"


LEGACY_IDS = {
    # Topic and unique_id of each per-entity config the hub published before devices.
    f"homeassistant/binary_sensor/{NODE}/hub_online/config": f"{NODE}_hub_online",
    **{
        f"homeassistant/sensor/{NODE}/athlete_ann_{e}/config": f"{NODE}_athlete_ann_{e}"
        for e in ("reps_in_set", "last_mcv", "velocity_loss", "pelvic_tilt")
    },
    f"homeassistant/sensor/{NODE}/sensor_aabbccddee01_battery/config": (
        f"{NODE}_sensor_aabbccddee01_battery"
    ),
    f"homeassistant/binary_sensor/{NODE}/sensor_aabbccddee01_connection/config": (
        f"{NODE}_sensor_aabbccddee01_connection"
    ),
}


async def test_per_entity_configs_move_to_device_discovery_as_home_assistant_documents(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Each old config: ``migrate_discovery``, then its device config, then cleared.

    An entity the hub does not announce yet (Bob, not seen since the start) keeps its old
    config until he is seen; another hub's configs are not touched.
    """
    bob = f"homeassistant/sensor/{NODE}/athlete_bob_reps_in_set/config"
    other = "homeassistant/sensor/sensorhub_rack2/athlete_ann_reps_in_set/config"
    forgotten = f"homeassistant/sensor/{NODE}/sensor_aabbccddee02_battery/config"
    legacy = {
        **LEGACY_IDS,
        bob: f"{NODE}_athlete_bob_reps_in_set",
        forgotten: f"{NODE}_sensor_aabbccddee02_battery",
        other: "rack2_ann",
    }
    async with aiomqtt.Client("127.0.0.1", broker.port) as old_hub:
        for topic, unique_id in legacy.items():
            config = {"name": "x", "unique_id": unique_id, "state_topic": f"{BASE}/status"}
            await old_hub.publish(topic, json.dumps(config), qos=1, retain=True)

    async with (
        subscribe(broker.port, "homeassistant/#") as ha,
        publisher(broker, tmp_path) as hub,
    ):
        hub.publish_record(rep("Ann", 1, 1, 2.0))
        hub.publish_sensor_status(sensor_status(SENSOR))

        def moved(messages: list[Received]) -> bool:
            return all(any(m.topic == t and not m.payload for m in messages) for t in LEGACY_IDS)

        await ha.wait_for(moved)
        order = [(m.topic, m.payload) for m in ha.messages if not m.retain]
        for topic, unique_id in LEGACY_IDS.items():
            steps = [i for i, (t, _p) in enumerate(order) if t == topic]
            assert [order[i][1] for i in steps] == [b'{"migrate_discovery":true}', b""]
            carrying = [
                i
                for i, (t, p) in enumerate(order)
                if t.startswith("homeassistant/device/") and unique_id.encode() in p
            ]
            assert carrying, f"no device config carries {unique_id}"
            assert steps[0] < carrying[0] < steps[1], f"{topic}: out of order"
        assert not any(m.topic in {bob, forgotten, other} for m in ha.messages if not m.retain)

        hub.publish_record(rep("Bob", 1, 1, 3.0))  # now his device is announced: he moves
        await ha.wait_for(lambda ms: any(m.topic == bob and not m.payload for m in ms))
        hub.forget_sensor("AA:BB:CC:DD:EE:02")  # a sensor forgotten goes, old config and all
        await ha.wait_for(lambda ms: any(m.topic == forgotten and not m.payload for m in ms))
        assert not any(m.topic == forgotten and m.payload and not m.retain for m in ha.messages)

    async with subscribe(broker.port, LEGACY) as after:
        await asyncio.sleep(0.5)  # the broker sends what it holds at once
    assert {m.topic for m in after.messages} == {other}, "left over from the old layout"


async def test_live_topics_are_rate_limited_latest_wins(broker: Mosquitto, tmp_path: Path) -> None:
    async with (
        subscribe(broker.port, f"{ANN}/tilt", f"{ANN}/state") as seen,
        publisher(broker, tmp_path, discovery_prefix=None, live_rate_hz=10.0) as hub,
    ):
        await until(lambda: hub.connected)
        publish = with_states(hub)
        started = time.monotonic()
        for i in range(100):  # 100 Hz for about a second (longer on a busy machine)
            publish(tilt("Ann", i / 100, float(i)))
            await asyncio.sleep(0.01)
        publishing_s = time.monotonic() - started
        await seen.wait_for(lambda _m: seen.on(f"{ANN}/tilt")[-1].json()["tilt_deg"] == 99.0)
        await asyncio.sleep(0.3)
        live = seen.on(f"{ANN}/tilt")
        # At 10 Hz: one message a 0.1 s slot while publishing, and the latest after it.
        assert 5 <= len(live) <= publishing_s * 10.0 + 3, (len(live), publishing_s)
        assert not any(m.retain for m in live)
        assert hub.stats["dropped_live"] >= 100 - len(live) - 1
        # The retained state follows tilt at most once a second.
        assert 1 <= len(seen.on(f"{ANN}/state")) <= 3
        await seen.wait_for(lambda _m: seen.on(f"{ANN}/state")[-1].json()["tilt_deg"] == 99.0)


async def test_a_live_value_a_little_early_is_not_held_back_a_whole_interval(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The analysis spaces live values by sample time; the radio's jitter must not add to it.

    Two values 60 ms apart (hub time) after a quiet spell both go at once; a steady flood
    still gets no more than the rate allows, plus one.
    """
    async with (
        subscribe(broker.port, f"{ANN}/tilt") as seen,
        publisher(broker, tmp_path, discovery_prefix=None, live_rate_hz=10.0) as hub,
    ):
        await until(lambda: hub.connected)
        hub.publish_record(tilt("Ann", 0.0, 1.0))
        await seen.wait_for(lambda m: len(m) == 1)
        await asyncio.sleep(0.06)
        put = asyncio.get_running_loop().time()
        hub.publish_record(tilt("Ann", 0.1, 2.0))
        await seen.wait_for(lambda m: len(m) == 2)
        waited = asyncio.get_running_loop().time() - put
        # Held to the old once-per-interval slot it would arrive 40 ms later.
        assert waited < 0.03, f"the second value waited {waited * 1e3:.0f} ms"

        start = asyncio.get_running_loop().time()
        for i in range(60):
            hub.publish_record(tilt("Ann", 1.0 + i / 100, float(i)))
            await asyncio.sleep(0.01)
        await seen.wait_for(lambda m: m[-1].json()["tilt_deg"] == 59.0)
        elapsed = asyncio.get_running_loop().time() - start
        flood = len(seen.on(f"{ANN}/tilt")) - 2
        assert flood <= elapsed * 10.0 + 2, (flood, elapsed)


async def test_sensor_status_without_floods_and_forget(broker: Mosquitto, tmp_path: Path) -> None:
    async with (
        subscribe(broker.port, SENSOR_TOPIC) as seen,
        publisher(broker, tmp_path, discovery_prefix=None) as hub,
    ):
        for frames in range(50):
            hub.publish_sensor_status(sensor_status(SENSOR, frames=frames))
        await seen.wait_for(lambda m: len(m) == 1)
        hub.publish_sensor_status(sensor_status(SENSOR, state="backing_off", frames=60))
        await seen.wait_for(lambda m: len(m) == 2)
        assert seen.messages[-1].json()["online"] is False
        hub.forget_sensor(SENSOR)
        await seen.wait_for(lambda m: len(m) == 3)
        assert seen.messages[-1].payload == b""
    async with subscribe(broker.port, f"{BASE}/sensors/#") as late:
        await asyncio.sleep(0.3)
    assert late.messages == [], "a forgotten sensor leaves no retained status"


async def handler(command: Command) -> dict[str, Any]:
    if command.name == "calibrate":
        raise CommandError(f"{command.args['athlete']!r} has no pelvis sensor")
    if command.name == "forget":
        raise RuntimeError("a bug in the handler")
    return {"done": command.name, **command.args}


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_commands_are_answered_even_after_garbage(
    broker: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    v5 = protocol == "5"
    replies_to = f"{BASE}/commands/response"
    async with (
        subscribe(
            broker.port,
            replies_to,
            "client/inbox",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        ) as replies,
        publisher(
            broker, tmp_path, discovery_prefix=None, on_command=handler, protocol=protocol
        ) as hub,
        aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        ) as client,
    ):
        await until(lambda: hub.connected)
        await asyncio.sleep(0.2)  # its subscription to the command topic is in place
        garbage = [b"\xff\x00", b"not json", b"[1, 2]", b'{"command": "explode", "id": "g4"}']
        for payload in garbage:
            await client.publish(f"{BASE}/commands", payload, qos=1)
        await client.publish(
            f"{BASE}/commands", b'{"command": "calibrate", "athlete": "Ann", "id": "c"}', qos=1
        )
        await client.publish(
            f"{BASE}/commands", b'{"command": "forget", "address": "AA:BB:CC:DD:EE:FF"}', qos=1
        )
        properties = None
        if v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = "client/inbox"
            properties.CorrelationData = b"corr-1"
        await client.publish(
            f"{BASE}/commands",
            json.dumps({"command": "set_load", "athlete": "Ann", "load_kg": 80, "id": "ok"}),
            qos=1,
            properties=properties,
        )
        await replies.wait_for(lambda _m: len(replies.on(replies_to)) == 7)
        if v5:
            await replies.wait_for(lambda _m: len(replies.on("client/inbox")) == 1)

    answers = [m.json() for m in replies.on(replies_to)]
    for answer in answers:
        jsonschema.validate(answer, schema("command_response"))
    assert [a["ok"] for a in answers] == [False] * 6 + [True]
    assert "not UTF-8" in answers[0]["error"]
    assert "not JSON" in answers[1]["error"]
    assert "JSON object" in answers[2]["error"]
    assert answers[3]["id"] == "g4"
    assert "unknown command 'explode'" in answers[3]["error"]
    assert answers[4] == {
        "id": "c",
        "command": "calibrate",
        "ok": False,
        "error": "'Ann' has no pelvis sensor",
    }
    assert answers[5]["command"] == "forget"
    assert "internal error" in answers[5]["error"]
    assert answers[6] == {
        "id": "ok",
        "command": "set_load",
        "ok": True,
        "result": {"done": "set_load", "athlete": "Ann", "load_kg": 80.0},
    }
    if v5:
        (direct,) = replies.on("client/inbox")
        assert direct.json() == answers[6]
        assert direct.correlation == b"corr-1"
    else:
        assert replies.on("client/inbox") == []


def test_the_hub_status_schema_states_a_storage_problem_and_still_takes_older_payloads() -> None:
    hub_status = schema("hub_status")
    jsonschema.Draft202012Validator.check_schema(hub_status)
    before = {"state": "online", "hub": "gym", "version": "0.1.0", "session_id": None}
    jsonschema.validate(before, hub_status)  # a hub from before the key
    jsonschema.validate({**before, "problems": {}}, hub_status)
    storage = {
        "message": "cannot record a rep: the disk holding /x/sessions.db is full",
        "since": "2026-11-24T05:01:02.123Z",
        "held_events": 8,
        "held_frames": 812,
        "dropped_events": 0,
        "dropped_frames": 0,
        "mqtt_held": 3,
        "mqtt_dropped": 0,
    }
    jsonschema.validate({**before, "problems": {"storage": storage}}, hub_status)
    for bad in ({**storage, "held_events": -1}, {k: v for k, v in storage.items() if k != "since"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**before, "problems": {"storage": bad}}, hub_status)
    with pytest.raises(jsonschema.ValidationError):  # any problem says what it is
        jsonschema.validate({**before, "problems": {"radio": {}}}, hub_status)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_the_will_follows_the_session_and_no_command_is_lost_as_it_changes(
    broker: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    # The will is fixed when a connection opens; it said session_id null while a session
    # ran. Renewing it reconnects, and commands sent meanwhile must still be answered once.
    v5 = protocol == "5"
    version = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    replies_to = f"{BASE}/commands/response"
    sent = 60
    async with (
        subscribe(broker.port, replies_to, f"{BASE}/status", protocol=version) as seen,
        publisher(
            broker, tmp_path, discovery_prefix=None, on_command=handler, protocol=protocol
        ) as hub,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=version) as client,
    ):
        await until(lambda: hub.connected)
        await asyncio.sleep(0.2)  # its subscription to the command topic is in place
        for i in range(sent):
            if i % 15 == 5:
                hub.set_hub_info(session_id=f"s{i}")
            payload = {"command": "set_load", "athlete": "Ann", "load_kg": 80, "id": f"c{i}"}
            await client.publish(f"{BASE}/commands", json.dumps(payload), qos=1)
            await asyncio.sleep(0.02)
        await seen.wait_for(lambda _m: len(seen.on(replies_to)) >= sent, 20)
        await asyncio.sleep(0.5)  # a duplicate, were there one, would come now
        assert hub.stats["reconnects"] == 0  # renewals are the hub's own, not outages

    ids = [m.json()["id"] for m in seen.on(replies_to)]
    assert sorted(ids) == sorted(f"c{i}" for i in range(sent))
    statuses = [json.loads(m.payload) for m in seen.on(f"{BASE}/status")]
    online = [s["session_id"] for s in statuses if s["state"] == "online"]
    assert online[-1] == "s50"
    assert statuses[-1]["reason"] == "shutdown"
    assert statuses[-1]["session_id"] == "s50"


async def test_a_restarted_hub_is_not_sent_commands_meant_for_its_last_run(
    broker: Mosquitto, tmp_path: Path
) -> None:
    # MQTT 3.1.1 keeps a session until a clean connection drops it; a hub that kept one
    # would be handed, on its next start, every command sent while it was down.
    settings = BrokerSettings.from_url(f"{broker.url}?client_id=hub-1")
    asked: list[str] = []

    async def record(command: Command) -> dict[str, Any]:
        asked.append(command.args.get("athlete", ""))
        return {}

    def hub() -> MqttPublisher:
        return MqttPublisher(
            settings,
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            hub_info={"session_id": None},
            on_command=record,
            reconnect_delay_s=(0.1, 1.0),
        )

    async with hub() as first:
        await until(lambda: first.connected)
        first.set_hub_info(session_id="s1")  # a renewal: the session is kept across it
        await asyncio.sleep(0.5)
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        payload = {"command": "set_load", "athlete": "Bob", "load_kg": 80}
        await client.publish(f"{BASE}/commands", json.dumps(payload), qos=1)
    async with hub() as second:
        await until(lambda: second.connected)
        await asyncio.sleep(1.0)
    assert asked == []


async def test_a_hub_stopped_while_a_renewal_cannot_reconnect_still_says_offline(
    broker: Mosquitto, tmp_path: Path
) -> None:
    # A renewal closes its first connection cleanly, so the broker sends no will for it.
    # Were the second to fail and the hub stop while waiting to retry, the broker would
    # say "online" for a hub that had gone.
    hub = MqttPublisher(
        BrokerSettings.from_url(broker.url),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        hub_info={"session_id": None},
        reconnect_delay_s=(30.0, 60.0),  # the stop comes while it waits to retry
    )
    connect = hub._connection
    attempts = 0

    async def second_fails() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            raise aiomqtt.MqttError("the broker is busy")
        await connect()

    hub._connection = second_fails  # type: ignore[method-assign]
    async with hub:
        await until(lambda: hub.connected)
        hub.set_hub_info(session_id="s1")
        await until(lambda: attempts == 2 and not hub.connected)
        await asyncio.sleep(0.2)
    async with subscribe(broker.port, f"{BASE}/status") as seen:
        await seen.wait_for(lambda _m: bool(seen.on(f"{BASE}/status")), 5)
    status = json.loads(seen.on(f"{BASE}/status")[-1].payload)
    said = (status["state"], status["reason"], status["session_id"])
    assert said == ("offline", "shutdown", "s1")
