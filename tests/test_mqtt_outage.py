"""The broker away: at start, killed mid-stream, and the hub itself killed (last will)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorhub.mqtt import BrokerSettings, MqttPublisher, Outbox, TopicTree
from tests.mosquitto import (
    Mosquitto,
    Received,
    env_without_pytest,
    free_port,
    rep,
    set_,
    subscribe,
    until,
)

TREE = TopicTree("sensorhub", "rack1")
BASE = "sensorhub/rack1"
REPS = f"{BASE}/athletes/ann/reps"
SETS = f"{BASE}/athletes/ann/sets"
EVENTS = f"{BASE}/events"


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The publisher logs errors only for what the test provokes: none here."""
    yield
    errors = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and r.name.startswith("sensorhub")
    ]
    assert errors == [], [r.getMessage() for r in errors]


def deduplicated(messages: list[Received]) -> list[int]:
    """The seqs a subscriber keeps: the first of each, as a dashboard would."""
    kept: list[int] = []
    for message in messages:
        seq = int(message.json()["seq"])
        if seq not in kept:
            kept.append(seq)
    return kept


async def test_broker_killed_mid_stream(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, persistence=True)
    await broker.start()
    produced = 0
    paused = asyncio.Event()

    hub = MqttPublisher(
        BrokerSettings.from_url(broker.url),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        discovery_prefix=None,
        reconnect_delay_s=(0.2, 2.0),
    )

    async def produce() -> None:
        # 50 reps a second, a set after every 5: far more than any athlete, all kept.
        nonlocal produced
        while True:
            await paused.wait()
            produced += 1
            set_index, rep_in_set = divmod(produced - 1, 5)
            hub.publish_record(rep("Ann", set_index + 1, rep_in_set + 1, float(produced)))
            if rep_in_set == 4:
                hub.publish_record(set_("Ann", set_index + 1, float(produced)))
            await asyncio.sleep(0.02)

    producer = asyncio.create_task(produce(), name="records")
    try:
        # A dashboard with a persistent session: the broker keeps its subscription on disk.
        async with (
            subscribe(
                broker.port,
                REPS,
                SETS,
                EVENTS,
                client_id="dashboard",
                clean_session=False,
                reconnect=True,
            ) as seen,
            hub,
        ):
            await until(lambda: hub.connected)
            paused.set()
            await asyncio.sleep(1.5)  # also lets mosquitto save the subscription (every 1 s)
            # Nothing in flight at the moment of the kill: what the broker acknowledged,
            # it has delivered (a broker without a disk loses what it has not).
            paused.clear()
            await seen.wait_for(lambda _m: len(deduplicated(seen.on(REPS))) == produced)
            await broker.kill()
            paused.set()
            await until(lambda: not hub.connected, timeout=5)
            # The broker is away; records keep coming, 200 of them.
            before_outage = produced
            await until(lambda: produced >= before_outage + 200)
            during_outage = produced
            assert hub.stats["queued"] > 0
            await broker.start()
            await asyncio.sleep(1.0)
            paused.clear()
            await until(lambda: hub.connected and hub.stats["queued"] == 0, timeout=30)
            await seen.wait_for(
                lambda _m: (
                    len(deduplicated(seen.on(REPS))) >= produced
                    and len(deduplicated(seen.on(SETS))) >= produced // 5
                ),
                timeout=30,
            )
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        await broker.stop()

    assert during_outage > 150
    reps = deduplicated(seen.on(REPS))
    events = deduplicated(seen.on(EVENTS))
    assert len(reps) == produced
    assert len(deduplicated(seen.on(SETS))) == produced // 5
    assert len(events) == produced + produced // 5
    for seqs in (reps, events, deduplicated(seen.on(SETS))):
        assert seqs == sorted(seqs), "delivered in seq order"
    # Each rep exactly once after deduplication, by its own number too.
    rep_numbers = [m.json()["rep_in_set"] + 5 * (m.json()["set_index"] - 1) for m in seen.on(REPS)]
    assert sorted(set(rep_numbers)) == list(range(1, produced + 1))
    # A duplicate is the same message again, never a different one under the same seq.
    by_seq: dict[int, bytes] = {}
    for message in seen.messages:
        seq = message.json()["seq"]
        assert by_seq.setdefault(seq, message.payload) == message.payload
    assert hub.stats["reconnects"] >= 1
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert len(outbox) == 0


async def test_broker_away_at_start(tmp_path: Path) -> None:
    port = free_port()
    hub = MqttPublisher(
        BrokerSettings.from_url(f"mqtt://127.0.0.1:{port}"),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        discovery_prefix=None,
        reconnect_delay_s=(0.1, 0.5),
    )
    started = time.monotonic()
    async with hub:
        assert time.monotonic() - started < 0.5, "__aenter__ must not wait for the broker"
        for i in range(1, 6):
            hub.publish_record(rep("Ann", 1, i, float(i)))
        await asyncio.sleep(0.5)
        assert not hub.connected
        assert hub.stats["queued"] == 10  # reps and events
        assert "127.0.0.1" in (hub.stats["last_error"] or "")
        broker = Mosquitto(tmp_path)
        broker.port = port
        async with broker, subscribe(port, REPS) as seen:
            await seen.wait_for(lambda m: len(m) == 5)
            assert [m.json()["rep_in_set"] for m in seen.messages] == [1, 2, 3, 4, 5]
            await until(lambda: hub.stats["queued"] == 0)


async def test_outbox_survives_a_restart_of_the_hub(tmp_path: Path) -> None:
    def hub(url: str) -> MqttPublisher:
        return MqttPublisher(
            BrokerSettings.from_url(url),
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            discovery_prefix=None,
        )

    async with hub(f"mqtt://127.0.0.1:{free_port()}") as first:  # no broker there
        first.publish_record(rep("Ann", 1, 1, 1.0))
    broker = Mosquitto(tmp_path)
    async with broker, subscribe(broker.port, REPS) as seen, hub(broker.url):
        await seen.wait_for(lambda m: len(m) == 1)
    assert seen.messages[0].json()["rep_in_set"] == 1


HUB_PROCESS = """
import asyncio, sys
from pathlib import Path
from sensorhub.mqtt import BrokerSettings, MqttPublisher, TopicTree

async def main():
    settings = BrokerSettings.from_url(sys.argv[1])
    tree = TopicTree("sensorhub", "rack1")
    async with MqttPublisher(
        settings, topics=tree, outbox_path=Path(sys.argv[2]), discovery_prefix=None
    ) as hub:
        while not hub.connected:
            await asyncio.sleep(0.02)
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_hub_dies(tmp_path: Path) -> None:
    async with Mosquitto(tmp_path) as broker, subscribe(broker.port, f"{BASE}/status") as seen:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HUB_PROCESS,
            broker.url,
            str(tmp_path / "outbox.db"),
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
            env=env_without_pytest(),
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(20):
                assert (await process.stdout.readline()).strip() == b"connected"
            await seen.wait_for(lambda m: bool(m) and m[-1].json()["state"] == "online")
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await seen.wait_for(lambda m: m[-1].json()["state"] == "offline")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert seen.messages[-1].json()["reason"] == "connection_lost"
        async with subscribe(broker.port, f"{BASE}/status") as late:
            await late.wait_for(lambda m: len(m) == 1)
        assert late.messages[0].retain
        assert late.messages[0].json()["state"] == "offline"
