"""Helpers for the service tests: a short scenario, a plain MQTT subscriber, schemas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import aiomqtt
import jsonschema

from firmware_protocol.virtual.scenario import Scenario

_SET = {
    "load_kg": 100.0,
    "rom_m": 0.24,
    "concentric_s": 0.45,
    "eccentric_s": 0.9,
    "lockout_hold_s": 0.6,
    "bottom_pause_s": 0.3,
}


SET_GAP_S = 6.0
"""The shortest set gap the configuration allows: the analysis closes a set this long after
its last rep, so the scenario's rests can be short."""


def short_scenario(*, sets: int = 2, reps: int = 3, rest_s: float = 8.0) -> Scenario:
    """Hip thrusts: an 8 s neutral hold (time to pair), then short sets; the last tips.

    A rest of ``rest_s`` puts about ``rest_s`` + 2 s between the last rep of a set and
    the first of the next: well beyond :data:`SET_GAP_S`, so sets never merge.
    """
    plans: list[dict[str, Any]] = []
    for i in range(sets):
        plan: dict[str, Any] = {**_SET, "rest_before_s": 3.0 if i == 0 else rest_s, "reps": reps}
        plan["velocity_loss"] = 0.1
        if i == sets - 1 and sets > 1:
            plan.update(tilt="anterior_tip", anterior_tip_deg=12.0, anterior_tip_from_rep=2)
        plans.append(plan)
    return Scenario.from_dict(
        {
            "name": "short",
            "exercise": "hip_thrust",
            "disturbances": False,
            "calibration_s": 8.0,
            "lead_out_s": 2.0,
            "sets": plans,
        }
    )


@cache
def schema(name: str) -> dict[str, Any]:
    """A payload schema shipped with the package."""
    text = resources.files("sensorhub.mqtt").joinpath(f"schemas/{name}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def validate(payload: dict[str, Any], name: str) -> None:
    """Raise if the payload does not follow its schema."""
    jsonschema.validate(payload, schema(name), cls=jsonschema.Draft202012Validator)


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float = field(default_factory=time.time)
    """When it arrived (Unix seconds)."""

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A plain MQTT client that records what it hears and reconnects when the broker returns."""

    port: int
    client_id: str | None = None
    """With an id, a persistent session: a broker with a disk keeps what arrives while the
    subscriber is away (also across the broker's restart) and hands it over when it is back."""
    topics: tuple[str, ...] = ("sensorhub/#", "homeassistant/#")
    messages: list[Message] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    client: aiomqtt.Client | None = None

    def on(self, suffix: str) -> list[Message]:
        return [m for m in self.messages if m.topic.endswith(suffix)]

    def json_on(self, suffix: str) -> list[Any]:
        return [m.json() for m in self.on(suffix) if m.payload]

    async def wait_for(
        self, predicate: Callable[[list[Message]], bool], timeout: float, what: str
    ) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.messages):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            topics = sorted({m.topic for m in self.messages})
            raise AssertionError(f"timed out waiting for {what}; topics seen: {topics}") from None

    async def publish(self, topic: str, payload: str | bytes) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    clean_session=self.client_id is None,
                ) as client:
                    self.client = client
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes | bytearray)
                        self.messages.append(
                            Message(str(message.topic), bytes(payload), bool(message.retain))
                        )
                        self.changed.set()
            except aiomqtt.MqttError:
                self.connected.clear()
                self.client = None
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def subscriber(port: int, *, client_id: str | None = None) -> AsyncIterator[Subscriber]:
    """A running :class:`Subscriber`, connected."""
    sub = Subscriber(port, client_id)
    task = asyncio.create_task(sub.run(), name="test subscriber")
    try:
        async with asyncio.timeout(10):
            await sub.connected.wait()
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
