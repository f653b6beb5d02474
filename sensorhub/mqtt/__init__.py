"""sensorhub over MQTT: a stable topic tree, a durable outbox, commands, Home Assistant discovery.

:class:`MqttPublisher` is what the service uses; :class:`EmbeddedBroker` stands in when
no broker is configured. The topic tree is described in :mod:`sensorhub.mqtt.topics`
and every payload has a JSON Schema in ``sensorhub/mqtt/schemas/`` (see :func:`schema`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from sensorhub.mqtt.broker import EmbeddedBroker
from sensorhub.mqtt.commands import COMMANDS, Command, parse_command
from sensorhub.mqtt.discovery import Discovery
from sensorhub.mqtt.outbox import Outbox, OutboxFullError, OutboxMessage
from sensorhub.mqtt.publisher import CommandHandler, MqttPublisher
from sensorhub.mqtt.settings import BrokerSettings
from sensorhub.mqtt.topics import TopicTree, sensor_id, slug

__all__ = [
    "COMMANDS",
    "SCHEMAS",
    "BrokerSettings",
    "Command",
    "CommandHandler",
    "Discovery",
    "EmbeddedBroker",
    "MqttPublisher",
    "Outbox",
    "OutboxFullError",
    "OutboxMessage",
    "TopicTree",
    "parse_command",
    "schema",
    "sensor_id",
    "slug",
]

SCHEMAS = (
    "hub_status",
    "sensor_status",
    "tilt",
    "velocity",
    "rep",
    "set",
    "alert",
    "session",
    "athlete_state",
    "command",
    "command_response",
)
"""The payloads with a JSON Schema (draft 2020-12), by name."""


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one payload, e.g. ``schema("rep")``."""
    if name not in SCHEMAS:
        raise KeyError(f"no schema {name!r}; the schemas are {', '.join(SCHEMAS)}")
    text = resources.files("sensorhub.mqtt").joinpath("schemas", f"{name}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
