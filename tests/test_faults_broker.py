"""The broker misbehaving: away for long (memory stays bounded), slow (nothing lost),
restarted (reached again at once)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from sensorhub.mqtt import BrokerSettings, MqttPublisher, TopicTree
from tests.mosquitto import Mosquitto, Subscriber, rep, subscribe, tilt, until

TREE = TopicTree("sensorhub", "rack1")
REPS = "sensorhub/rack1/athletes/ann/reps"


async def until_drained(hub: MqttPublisher, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while hub.stats["queued"]:  # noqa: ASYNC110 - the publisher has no drain event
            await asyncio.sleep(0.05)


def first_copies(seqs: list[int]) -> list[int]:
    kept: list[int] = []
    for seq in seqs:
        if seq not in kept:
            kept.append(seq)
    return kept


async def test_memory_stays_bounded_while_the_broker_is_away(tmp_path: Path) -> None:
    # A dashboard with a persistent session on a broker with a disk, as deployed: when the
    # broker is back, whichever of the hub and the dashboard reconnects first, the
    # dashboard receives the backlog (a clean-session subscriber missed its start once).
    broker = Mosquitto(tmp_path, persistence=True)
    port = broker.port

    def dashboard() -> contextlib.AbstractAsyncContextManager[Subscriber]:
        return subscribe(port, REPS, client_id="dashboard", clean_session=False)

    async with broker, dashboard():
        pass
    # From here nothing listens until the broker is back: every connection is refused.
    hub = MqttPublisher(
        BrokerSettings.from_url(f"mqtt://127.0.0.1:{port}"),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        discovery_prefix=None,
        reconnect_delay_s=(0.2, 1.0),
    )
    count = 2500
    async with hub:
        hub.publish_record(rep("Ann", 1, 1, 0.0))  # warm up: tables, caches, first encodes
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for i in range(2, count + 1):
                hub.publish_record(rep("Ann", 1 + i // 10, 1 + i % 10, float(i)))
                hub.publish_record(tilt("Ann", float(i), 1.0))  # live: latest only, no queue
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert hub.stats["queued"] == 2 * count  # every rep on its topic and on events
        assert not hub.connected
        # 2,500 reps are about 2.5 MB of JSON; what stays in memory is a small fraction of it.
        assert after - before < 600_000, f"{(after - before) / 1e6:.1f} MB kept in memory"
        assert (tmp_path / "outbox.db").stat().st_size + _wal_size(tmp_path) > 1_200_000

        async with broker, dashboard() as seen:
            await until_drained(hub, 90)
            await seen.wait_for(lambda m: len(first_copies([x.json()["seq"] for x in m])) == count)
    seqs = [m.json()["seq"] for m in seen.messages]
    kept = first_copies(seqs)
    assert kept == sorted(kept)
    assert [seen.messages[seqs.index(s)].json()["t_end"] for s in kept[:3]] == [
        rep("Ann", 1, 1, 0.0)["t_end"],
        rep("Ann", 1, 3, 2.0)["t_end"],
        rep("Ann", 1, 4, 3.0)["t_end"],
    ]


def _wal_size(directory: Path) -> int:
    wal = directory / "outbox.db-wal"
    return wal.stat().st_size if wal.exists() else 0


@contextlib.asynccontextmanager
async def slow_proxy(target_port: int, delay_s: float) -> AsyncIterator[int]:
    """A TCP proxy that holds every chunk for ``delay_s`` in each direction."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                await asyncio.sleep(delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        for task in (
            asyncio.create_task(pipe(reader, up_writer), name="proxy up"),
            asyncio.create_task(pipe(up_reader, writer), name="proxy down"),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_slow_broker_delays_but_loses_and_repeats_nothing(tmp_path: Path) -> None:
    async with (
        Mosquitto(tmp_path) as broker,
        subscribe(broker.port, REPS) as seen,
        slow_proxy(broker.port, delay_s=0.25) as port,
    ):
        hub = MqttPublisher(
            BrokerSettings.from_url(f"mqtt://127.0.0.1:{port}"),
            topics=TREE,
            outbox_path=tmp_path / "outbox.db",
            discovery_prefix=None,
        )
        async with hub:
            for i in range(1, 81):
                hub.publish_record(rep("Ann", 1 + i // 10, 1 + i % 10, float(i)))
                hub.publish_record(tilt("Ann", float(i), 1.0))
            assert hub.stats["queued"] == 160  # taken at once; the slow link is the sender's
            await until_drained(hub, 60)
            await seen.wait_for(lambda m: len(m) >= 80, timeout=20)
            assert hub.stats["reconnects"] == 0  # slow is not broken: no timeouts, no reconnect
    seqs = [m.json()["seq"] for m in seen.messages]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs)) == 80


async def test_a_broker_back_from_a_restart_is_reached_at_once_not_after_the_back_off(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path)
    hub = MqttPublisher(
        BrokerSettings.from_url(f"mqtt://127.0.0.1:{broker.port}"),
        topics=TREE,
        outbox_path=tmp_path / "outbox.db",
        discovery_prefix=None,
        reconnect_delay_s=(20.0, 60.0),  # the first wait after a failure: 15 to 25 s
    )

    async with broker, hub:
        await until(lambda: hub.connected, 10)
        await broker.kill()  # the broker goes away
        await until(lambda: not hub.connected, 10)
        await asyncio.sleep(2.0)  # the hub waits out its back-off; the port is closed
        await broker.start()
        await until(lambda: hub.connected, 10)  # the back-off alone would take 11 s more
