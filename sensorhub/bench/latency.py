"""Latency: from a notification arriving at the hub to its event arriving at a subscriber.

One process runs the virtual sensors on the in-process radio, the whole :class:`Service`
(links, analysis, store, MQTT publisher) and a plain aiomqtt subscriber of a real broker.
The service's ``trace`` hook tells each record with the arrival time of the notification
whose batch produced it (``SensorBatch.received_at``); the subscriber notes when the
published record reaches it. Both are ``time.monotonic()`` in the same process, so their
difference is the latency, clock-free. Records released by the clock rather than by a
batch (a rep that waited for the pelvis past its timeout) have no arrival time and are
counted apart.

The sensors share the event loop with the hub here, so their own work (generating and
notifying frames) sits inside the measured latency: a hub on its own machine does better.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt
import numpy as np

from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble.radio import Radio
from sensorhub.config import ServiceConfig
from sensorhub.errors import MqttError
from sensorhub.records import Record
from sensorhub.service import Service, freeze_startup_heap

__all__ = ["LatencyResult", "latency_scenario", "measure_latency"]

HUB: Final = "bench"
ATHLETE: Final = "Ada"
SET_GAP_S: Final = 10.0
_KEYS: Final = {"rep": "t_end", "tilt": "t", "velocity": "t"}
"""The field that, with the type and athlete, names one record."""
_SET: Final[dict[str, Any]] = {
    "load_kg": 100.0,
    "rom_m": 0.24,
    "concentric_s": 0.45,
    "eccentric_s": 0.9,
    "lockout_hold_s": 0.6,
    "bottom_pause_s": 0.3,
    "velocity_loss": 0.1,
}


def latency_scenario(*, sets: int, reps: int, rest_s: float = 8.0) -> Scenario:
    """Hip thrusts: a 10 s neutral hold (time to pair both sensors), then short sets."""
    if sets < 1 or reps < 1:
        raise ValueError(f"sets = {sets}, reps = {reps}: give at least one of each")
    plans = [
        {**_SET, "rest_before_s": 3.0 if i == 0 else rest_s, "reps": reps} for i in range(sets)
    ]
    return Scenario.from_dict(
        {
            "name": f"bench_{sets}x{reps}",
            "exercise": "hip_thrust",
            "disturbances": False,
            "calibration_s": 10.0,
            "lead_out_s": 2.0,
            "sets": plans,
        }
    )


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class LatencyResult:
    """Latencies (ms) by record type, from notification arrival to the subscriber."""

    broker: str
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    released_by_clock: dict[str, int] = field(default_factory=dict)
    """Records made by the clock (no notification to measure from), by type."""
    traced: dict[str, int] = field(default_factory=dict)
    """Records the service made, by type (live streams are thinned before publishing)."""

    def summary(self, kind: str) -> dict[str, float | int | None]:
        """p50, p99, max (ms) and the count for one record type."""
        values = self.latencies_ms.get(kind, [])
        return {
            "count": len(values),
            "p50_ms": _round(_percentile(values, 50)),
            "p99_ms": _round(_percentile(values, 99)),
            "max_ms": _round(max(values) if values else None),
            "mean_ms": _round(statistics.fmean(values) if values else None),
        }

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-able object."""
        return {
            "broker": self.broker,
            **{kind: self.summary(kind) for kind in ("rep", "tilt", "velocity")},
            "released_by_clock": self.released_by_clock,
            "traced": self.traced,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class _Arrivals:
    """Records the service made, keyed by what names them, with their arrival times."""

    made: dict[tuple[str, str, float], float] = field(default_factory=dict)
    received: dict[tuple[str, str, float], float] = field(default_factory=dict)
    by_clock: dict[str, int] = field(default_factory=dict)
    traced: dict[str, int] = field(default_factory=dict)
    reps: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def trace(self, record: Record, received_at: float) -> None:
        kind = record["type"]
        self.traced[kind] = self.traced.get(kind, 0) + 1
        key_field = _KEYS.get(kind)
        if key_field is None:
            return
        if received_at <= 0.0:
            self.by_clock[kind] = self.by_clock.get(kind, 0) + 1
            return
        self.made[(kind, record["athlete"], record[key_field])] = received_at

    def heard(self, kind: str, payload: bytes, at: float) -> None:
        record = json.loads(payload)
        self.received[(kind, record["athlete"], record[_KEYS[kind]])] = at
        if kind == "rep":
            self.reps += 1
            self.changed.set()


@contextlib.asynccontextmanager
async def _subscriber(port: int, arrivals: _Arrivals) -> AsyncIterator[None]:
    ready = asyncio.Event()
    leaves = {"reps": "rep", "tilt": "tilt", "velocity": "velocity"}

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier=None) as client:
            for leaf in leaves:
                await client.subscribe(f"sensorhub/{HUB}/athletes/+/{leaf}", qos=1)
            ready.set()
            async for message in client.messages:
                at = time.monotonic()  # first thing: what is measured is the arrival
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    leaf = str(message.topic).rsplit("/", 1)[-1]
                    arrivals.heard(leaves[leaf], bytes(payload), at)

    task = asyncio.create_task(listen(), name="bench subscriber")
    try:
        waiter = asyncio.create_task(ready.wait(), name="bench subscriber ready")
        await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            try:
                task.result()
            except aiomqtt.MqttError as exc:
                raise MqttError(f"the bench subscriber could not connect: {exc}") from exc
        if not ready.is_set():
            raise MqttError("the bench subscriber did not subscribe within 10 s")
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


async def measure_latency(
    scenario: Scenario,
    *,
    workdir: Path,
    broker_url: str,
    broker_port: int,
    broker_kind: str,
    seed: int = 3,
) -> LatencyResult:
    """Run one session of ``scenario`` through the whole service; gather the latencies."""
    arrivals = _Arrivals()
    radio = VirtualRadio()
    state = workdir / "latency-state"
    config = ServiceConfig(
        hub_name=HUB,
        ble="virtual",
        state_dir=state,
        broker_url=broker_url,
        auto_start=False,
        set_gap_s=SET_GAP_S,
        discovery=False,
        source="bench",
    )
    async with (
        _subscriber(broker_port, arrivals),
        Emulator(scenario, seed=seed, radio=radio) as emulator,
        Radio.on_virtual_radio(radio, state_dir=state) as hub_radio,
        Service(config, radio=hub_radio, trace=arrivals.trace) as service,
    ):
        freeze_startup_heap()  # as `sensorhub run` does
        # The pelvis first: its neutral hold must fall in the scenario's opening bridge.
        for sensor in sorted(emulator.sensors, key=lambda s: s.body != "pelvis"):
            await service.hub.pair(sensor.firmware.address, role=sensor.body, athlete=ATHLETE)
        service.start_session()
        expected = len(emulator.trajectory.truth.reps)
        assert emulator.started_at is not None
        ends = emulator.started_at + emulator.trajectory.duration_s + 2 * SET_GAP_S
        while arrivals.reps < expected and time.monotonic() < ends:
            arrivals.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.1, min(1.0, ends - time.monotonic()))):
                    await arrivals.changed.wait()
        await asyncio.sleep(0.5)  # the last live updates in flight
        service.stop_session()
    result = LatencyResult(broker_kind, released_by_clock=arrivals.by_clock, traced=arrivals.traced)
    for key, received_at in arrivals.made.items():
        heard = arrivals.received.get(key)
        if heard is not None:
            result.latencies_ms.setdefault(key[0], []).append((heard - received_at) * 1e3)
    return result
