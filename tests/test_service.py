"""The whole service in one process: virtual sensors over the Bumble radio, a real mosquitto.

Sensors are paired through the MQTT command topic, a session is recorded, and a plain
subscriber checks the topic tree, the payload schemas, retained availability, Home
Assistant discovery and that the store holds what was published.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.radio import VirtualRadio
from sensorhub.ble.radio import Radio
from sensorhub.config import ServiceConfig
from sensorhub.mqtt.topics import sensor_id
from sensorhub.registry import SensorRegistry
from sensorhub.service import Service
from sensorhub.store import SessionStore
from tests.mosquitto import Mosquitto
from tests.service_helpers import SET_GAP_S, Subscriber, short_scenario, subscriber, validate

pytestmark = pytest.mark.timeout(240)

BASE = "sensorhub/gym"


def make_config(tmp_path: Path, broker: Mosquitto, **changes: Any) -> ServiceConfig:
    values: dict[str, Any] = {
        "hub_name": "gym",
        "ble": "virtual",
        "state_dir": tmp_path / "state",
        "broker_url": broker.url,
        "auto_start": False,
        "set_gap_s": SET_GAP_S,
        "source": "test",
        **changes,
    }
    return ServiceConfig(**values)


async def command(sub: Subscriber, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send a command and wait for the reply with its id."""
    ident = f"t{len(sub.messages)}-{body.get('command')}"
    await sub.publish(f"{BASE}/commands", json.dumps({**body, "id": ident}))
    replies: list[dict[str, Any]] = []

    def answered(_: object) -> bool:
        replies[:] = [r for r in sub.json_on("/commands/response") if r.get("id") == ident]
        return bool(replies)

    await sub.wait_for(answered, timeout, f"the reply to {body}")
    validate(replies[0], "command_response")
    return replies[0]


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition of the service that has no event to wait on."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - polled: the store has no events
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def pair_both(service: Service, emulator: Emulator, *, calibrate: bool = True) -> None:
    """Pair the emulator's sensors to Ada, the pelvis first (its neutral hold opens the
    scenario)."""
    for sensor in sorted(emulator.sensors, key=lambda s: s.body != "pelvis"):
        await service.hub.pair(
            sensor.firmware.address, role=sensor.body, athlete="Ada", calibrate=calibrate
        )


async def test_a_session_over_mqtt(tmp_path: Path) -> None:
    scenario = short_scenario(sets=2, reps=3)
    radio = VirtualRadio()
    async with (
        Mosquitto(tmp_path) as broker,
        subscriber(broker.port) as sub,
        Emulator(scenario, seed=3, radio=radio) as emulator,
        Radio.on_virtual_radio(radio, state_dir=tmp_path / "state") as hub_radio,
    ):
        config = make_config(tmp_path, broker)
        async with Service(config, radio=hub_radio) as service:
            await sub.wait_for(
                lambda m: (
                    any(x.topic == f"{BASE}/status" and x.retain is False for x in m)
                    or bool(sub.json_on(f"{BASE}/status"))
                ),
                10,
                "the hub's status",
            )
            assert sub.json_on(f"{BASE}/status")[-1]["state"] == "online"

            # Bad commands change nothing and the service keeps answering.
            for bad in (b"not json", b"[]", b'{"command": "explode"}', b'{"command": "set_load"}'):
                await sub.publish(f"{BASE}/commands", bad)
            reply = await command(sub, {"command": "stop_session"})
            assert reply["ok"] is False
            assert "no session is running" in reply["error"]
            errors = [r for r in sub.json_on("/commands/response") if not r["ok"]]
            assert len(errors) >= 5

            # Pair both sensors through the command topic (the pelvis while the athlete
            # still holds the neutral bridge), then record a session.
            for sensor in sorted(emulator.sensors, key=lambda s: s.body != "pelvis"):
                reply = await command(
                    sub,
                    {
                        "command": "pair",
                        "address": sensor.firmware.address,
                        "role": sensor.body,
                        "athlete": "Ada",
                    },
                )
                assert reply["ok"], reply
            reply = await command(sub, {"command": "start_session", "note": "test"})
            assert reply["ok"], reply
            session_id = reply["result"]["session_id"]
            reply = await command(sub, {"command": "set_load", "athlete": "Ada", "load_kg": 100})
            assert reply["ok"], reply

            await sub.wait_for(
                lambda _: len(sub.json_on("/athletes/ada/sets")) >= 1, 90, "the first set"
            )
            await sub.wait_for(
                lambda _: (
                    len([r for r in sub.json_on("/athletes/ada/reps") if r["set_index"] == 2]) >= 3
                ),
                60,
                "the reps of the second set",
            )
            reply = await command(sub, {"command": "stop_session"})
            assert reply["ok"], reply
            assert reply["result"]["session_id"] == session_id
            await sub.wait_for(
                lambda _: len(sub.json_on("/athletes/ada/sets")) >= 2, 10, "the second set"
            )
            addresses = [s.firmware.address for s in emulator.sensors]
            stored_reps = service.store.reps(session_id)

        await sub.wait_for(
            lambda _: sub.json_on(f"{BASE}/status")[-1]["state"] == "offline",
            10,
            "the hub's offline status after a clean shutdown",
        )

    # --- what a dashboard saw ---------------------------------------------------------------
    reps = sub.json_on("/athletes/ada/reps")
    sets = sub.json_on("/athletes/ada/sets")
    for rep in reps:
        validate(rep, "rep")
    for s in sets:
        validate(s, "set")
    truth = [r for r in emulator.trajectory.truth.reps if not r.partial]
    assert [s["rep_count"] for s in sets] == [3, 3]
    assert len([r for r in reps if not r["partial"]]) == len(truth)
    assert all(r["mean_power_w"] is not None for r in reps)  # the load was set
    last = [r for r in reps if r["set_index"] == 2]
    assert any(r["tilt_verdict"] == "anterior_tilt" for r in last)
    assert all(r["tilt_verdict"] == "ok" for r in reps if r["set_index"] == 1)

    # Live streams: rate-limited, schema-valid.
    tilt = sub.on("/athletes/ada/tilt")
    velocity = sub.on("/athletes/ada/velocity")
    assert tilt
    assert velocity
    for message in tilt[:50]:
        validate(message.json(), "tilt")
        assert not message.retain
    for message in velocity[:50]:
        validate(message.json(), "velocity")
    span = tilt[-1].json()["t"] - tilt[0].json()["t"]
    assert len(tilt) <= 10 * span * 1.2 + 5

    # Every QoS 1 event, in order, once.
    events = sub.json_on(f"{BASE}/events")
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    assert {e["type"] for e in events} >= {"rep", "set", "session"}
    for event in events:
        validate(event, event["type"])

    # Per-sensor availability and Home Assistant discovery.
    for address in addresses:
        statuses = sub.json_on(f"/sensors/{sensor_id(address)}/status")
        assert any(s["online"] for s in statuses)
        for s in statuses:
            validate(s, "sensor_status")
    configs = [m for m in sub.messages if m.topic.startswith("homeassistant/") and m.payload]
    assert configs
    assert all(m.topic.endswith("/config") for m in configs)
    components = [c for m in configs for c in m.json()["cmps"].values()]
    assert any(c.get("unit_of_measurement") == "m/s" for c in components)
    per_topic = {m.topic for m in configs}
    assert len(configs) <= 3 * len(per_topic)  # sent on connect, not on every update

    # The store holds what was published.
    assert [r["t_end"] for r in stored_reps] == [r["t_end"] for r in reps]
    store = SessionStore.open_readonly(SessionStore.path_in(tmp_path / "state"))
    try:
        assert len(store.sets(session_id)) == 2
        listed = {s["id"]: s for s in store.sessions()}
        assert listed[session_id]["athletes"] == ["Ada"]
    finally:
        store.close()


async def test_a_refused_command_changes_nothing(tmp_path: Path) -> None:
    radio = VirtualRadio()
    async with (
        Mosquitto(tmp_path) as broker,
        subscriber(broker.port) as sub,
        Emulator(short_scenario(sets=1), seed=5, radio=radio) as emulator,
        Radio.on_virtual_radio(radio, state_dir=tmp_path / "state") as hub_radio,
        Service(make_config(tmp_path, broker), radio=hub_radio) as service,
    ):
        await until(lambda: service.publisher.connected, 10, "the hub on the broker")
        await asyncio.sleep(0.3)  # its subscription is in place
        reply = await command(sub, {"command": "set_load", "athlete": "Ghost", "load_kg": 9})
        assert reply["ok"] is False
        assert "no athlete 'Ghost'" in reply["error"]
        reply = await command(sub, {"command": "start_session", "athlete": "Ada"})
        assert reply["ok"], reply
        session_id = reply["result"]["session_id"]
        reply = await command(sub, {"command": "set_load", "athlete": "Ghost", "load_kg": 9})
        assert reply["ok"] is False
        assert "the athletes are Ada" in reply["error"]
        # Two values for one key: which was meant is a guess, so neither is taken.
        await sub.publish(
            f"{BASE}/commands",
            '{"id": "twice", "command": "set_load", "athlete": "Ada", "load_kg": 50, '
            '"load_kg": 500}',
        )
        await sub.wait_for(
            lambda _: any(r["id"] == "twice" for r in sub.json_on("/commands/response")),
            10,
            "the reply to a command with a key given twice",
        )
        (twice,) = (r for r in sub.json_on("/commands/response") if r["id"] == "twice")
        assert twice["ok"] is False
        assert "'load_kg' is given twice" in twice["error"]
        # An athlete whose sensor is paired while the session runs joins it, load and all.
        bar = next(s for s in emulator.sensors if s.body == "bar")
        await service.hub.pair(bar.firmware.address, role="bar", athlete="Bo", calibrate=False)
        await until(lambda: "Bo" in service.known_athletes(), 10, "Bo to be known")
        reply = await command(sub, {"command": "set_load", "athlete": "Bo", "load_kg": 60})
        assert reply["ok"], reply
        # Forgetting a sensor nobody registered leaves the registry as it was, unwritten.
        registry = tmp_path / "state" / "sensors.json"
        written = registry.stat()
        reply = await command(sub, {"command": "forget", "address": "AA:BB:CC:DD:EE:FF"})
        assert "no registered sensor has address AA:BB:CC:DD:EE:FF" in reply["error"]
        assert (registry.stat().st_ino, registry.stat().st_mtime_ns) == (
            written.st_ino,
            written.st_mtime_ns,
        )
        await until(
            lambda: service.session is not None and "Bo" in service.session.athletes,
            20,
            "Bo's data in the session",
        )
        reply = await command(sub, {"command": "set_load", "athlete": "Bo", "load_kg": 70})
        assert reply["ok"], reply
        reply = await command(sub, {"command": "stop_session"})
        assert reply["ok"], reply
        stored = service.store.session(session_id)
        await sub.wait_for(
            lambda _: any(e.get("event") == "stopped" for e in sub.json_on(f"{BASE}/events")),
            10,
            "the session's end",
        )
    events = [e for e in sub.json_on(f"{BASE}/events") if e["type"] == "session"]
    assert [(e["event"], e["athletes"]) for e in events] == [
        ("started", ["Ada"]),
        ("stopped", ["Ada", "Bo"]),  # not Ghost
    ]
    assert [(a["athlete"], a["load_kg"]) for a in stored["athletes"]] == [
        ("Ada", None),
        ("Bo", 70.0),
    ]


async def test_broker_outage_mid_session_loses_no_event(tmp_path: Path) -> None:
    scenario = short_scenario(sets=2, reps=3)
    radio = VirtualRadio()
    # A dashboard with a persistent session on a broker with a disk: what the hub sends
    # when the broker is back reaches it even if the hub reconnects first.
    async with (
        Mosquitto(tmp_path, persistence=True) as broker,
        subscriber(broker.port, client_id="dashboard") as sub,
        Emulator(scenario, seed=4, radio=radio) as emulator,
        Radio.on_virtual_radio(radio, state_dir=tmp_path / "state") as hub_radio,
    ):
        config = make_config(tmp_path, broker)
        # Back-off short enough that the broker's return is noticed at once, not after 30 s.
        async with Service(config, radio=hub_radio, mqtt_reconnect_delay_s=(0.2, 1.0)) as service:
            await pair_both(service, emulator)
            session = service.start_session()

            def stored_in_set(index: int) -> int:
                return len([r for r in service.store.reps(session.id) if r["set_index"] == index])

            await sub.wait_for(lambda _: bool(sub.json_on("/athletes/ada/reps")), 60, "a rep")
            await broker.kill()
            # Away while the rest of set 1, its end and the start of set 2 happen.
            await until(
                lambda: bool(service.store.sets(session.id)) and stored_in_set(2) >= 1,
                60,
                "set 1 to end and set 2 to begin during the outage",
            )
            assert not service.publisher.connected
            assert service.publisher.stats["queued"] > 0
            await broker.start()
            await sub.wait_for(
                lambda _: len(sub.json_on("/athletes/ada/sets")) >= 1, 60, "set 1 after the outage"
            )
            await until(lambda: stored_in_set(2) >= 3, 60, "the last rep of set 2")
            service.stop_session()
            stored = service.store.reps(session.id)
            stored_sets = service.store.sets(session.id)
            await sub.wait_for(
                lambda _: len(sub.json_on("/athletes/ada/sets")) >= len(stored_sets),
                20,
                "every set",
            )
        await asyncio.sleep(0.5)

    # QoS 1 is at-least-once: a message whose PUBACK the dying broker never sent is sent
    # again after the reconnect. Its `seq` tells a subscriber it has it already; after
    # dropping such copies, every rep and set is there once, in order.
    for topic in ("/athletes/ada/reps", "/athletes/ada/sets", f"{BASE}/events"):
        received = sub.json_on(topic)
        first: dict[int, dict[str, object]] = {}
        for message in received:
            assert first.setdefault(message["seq"], message) == message, "a copy that differs"
        seqs = list(first)
        assert seqs == sorted(seqs), f"{topic}: out of order"
        assert len(received) - len(seqs) <= 20, f"{topic}: more copies than a send window"
    reps = list({r["seq"]: r for r in sub.json_on("/athletes/ada/reps")}.values())
    sets = list({r["seq"]: r for r in sub.json_on("/athletes/ada/sets")}.values())
    assert [r["t_end"] for r in reps] == [r["t_end"] for r in stored]
    assert [s["t_end"] for s in sets] == [s["t_end"] for s in stored_sets]
    assert len(stored) >= 6
    assert len(stored_sets) == 2


async def test_a_restarted_hub_has_tilt_at_once_from_the_axis_it_learned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long rest after the first set: the hub restarts in it, with no swing to learn from.
    scenario = short_scenario(sets=2, reps=3, rest_s=20.0)
    radio = VirtualRadio()
    state = tmp_path / "state"
    registry = SensorRegistry(state / "sensors.json")
    # A slow disk: the axis is saved by a thread of its own, the hub does not wait for it.
    saving_threads: list[str] = []
    update_calibration = SensorRegistry.update_calibration

    def slow_update(self: SensorRegistry, address: str, values: dict[str, Any]) -> Any:
        saving_threads.append(threading.current_thread().name)
        time.sleep(0.5)
        return update_calibration(self, address, values)

    monkeypatch.setattr(SensorRegistry, "update_calibration", slow_update)
    async with (
        Mosquitto(tmp_path) as broker,
        subscriber(broker.port) as sub,
        Emulator(scenario, seed=5, radio=radio) as emulator,
    ):
        config = make_config(tmp_path, broker)
        pelvis = next(s.firmware.address for s in emulator.sensors if s.body == "pelvis")

        def tilts(session_id: int) -> list[dict[str, Any]]:
            return [t for t in sub.json_on("/athletes/ada/tilt") if t["session_id"] == session_id]

        def saved() -> dict[str, Any]:
            sensor = registry.get(pelvis)
            assert sensor is not None
            return sensor.calibration or {}

        async with (
            Radio.on_virtual_radio(radio, state_dir=state) as hub_radio,
            Service(config, radio=hub_radio) as service,
        ):
            await pair_both(service, emulator)
            assert "tilt_axis_sensor" not in saved()
            first = service.start_session().id
            await sub.wait_for(lambda _: bool(tilts(first)), 60, "tilt in the first session")
            await until(lambda: "tilt_axis_sensor" in saved(), 5, "the axis in the registry")
            await sub.wait_for(lambda _: bool(sub.json_on("/athletes/ada/sets")), 60, "set 1")
        learned = saved()

        # A new hub on the same state directory, during the rest before set 2.
        async with (
            Radio.on_virtual_radio(radio, state_dir=state) as hub_radio,
            Service(config, radio=hub_radio) as service,
        ):
            second = service.start_session().id
            started = asyncio.get_running_loop().time()
            await sub.wait_for(lambda _: bool(tilts(second)), 20, "tilt after the restart")
            waited = asyncio.get_running_loop().time() - started
            reps_before = [
                r for r in sub.json_on("/athletes/ada/reps") if r["session_id"] == second
            ]
            service.stop_session()
    # Without the saved axis the tilt waits for set 2's swings, over 10 s away.
    assert waited < 8.0, waited
    assert reps_before == []
    assert saving_threads
    assert threading.main_thread().name not in saving_threads
    assert {"neutral_gravity_sensor", "tilt_axis_sensor"} <= learned.keys()  # pairing's kept
    axis = learned["tilt_axis_sensor"]
    assert abs(sum(v * v for v in axis) - 1.0) < 1e-3
    # The athlete rests between the two sessions: the restarted hub's tilt carries on
    # from where the first one's ended.
    before, after = tilts(first)[-1]["tilt_deg"], tilts(second)[0]["tilt_deg"]
    assert abs(after - before) < 2.0, (before, after)


async def test_an_axis_learned_against_a_neutral_measured_in_the_session_is_not_saved(
    tmp_path: Path,
) -> None:
    # Paired without the neutral hold: the session measures the neutral itself, and the
    # registry has no neutral for an axis to go with (the scale bench pairs this way).
    radio = VirtualRadio()
    state = tmp_path / "state"
    registry = SensorRegistry(state / "sensors.json")
    async with (
        Mosquitto(tmp_path) as broker,
        subscriber(broker.port) as sub,
        Emulator(short_scenario(sets=1, reps=3), seed=6, radio=radio) as emulator,
        Radio.on_virtual_radio(radio, state_dir=state) as hub_radio,
        Service(make_config(tmp_path, broker), radio=hub_radio) as service,
    ):
        await pair_both(service, emulator, calibrate=False)
        session = service.start_session().id
        await sub.wait_for(
            lambda _: any(t["session_id"] == session for t in sub.json_on("/athletes/ada/tilt")),
            60,
            "tilt from the neutral measured in the session",
        )
        await sub.wait_for(lambda _: bool(sub.json_on("/athletes/ada/reps")), 30, "a rep")
        service.stop_session()
    # Read once the service has closed: a save it made would have landed by then.
    calibrations = [s.calibration for s in registry.load().values()]
    assert len(calibrations) == 2
    assert all("tilt_axis_sensor" not in (c or {}) for c in calibrations), calibrations
