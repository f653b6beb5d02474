"""Home Assistant MQTT discovery: the retained configs that make sensorhub's devices appear.

Device-based discovery (Home Assistant 2024.11 and later): one retained config per device
on ``<discovery_prefix>/device/<object_id>/config`` — the hub, each athlete, each sensor —
carrying the device (``dev``), the origin (``o``) and its entities as components
(``cmps``, each with its platform ``p``). The entities point at sensorhub's own retained
topics (athlete state, sensor status) with a ``value_template``, so Home Assistant reads
the same payloads as every other dashboard and nothing is published twice. Availability
follows the hub status topic, whose last will says ``offline`` when the hub dies.

Configs are sent on connect and when Home Assistant announces itself (``online`` on
``<discovery_prefix>/status``, its birth message), never on every update.

Earlier versions published one config per entity on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config``. Those are moved over as
Home Assistant documents it: ``{"migrate_discovery": true}`` on the old topic (Home
Assistant unloads the entity and keeps its registry entry), the device config with the
same ``unique_id`` (the entity comes back with its name, history and automations), then
an empty retained payload clears the old topic. :meth:`Discovery.legacy_unique_id` tells
such a topic from others; the publisher does the moving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from sensorhub.mqtt.topics import TopicTree, sensor_id, slug

__all__ = ["MIGRATE_DISCOVERY", "Discovery", "DiscoveryConfig", "unique_ids"]

DiscoveryConfig = tuple[str, dict[str, Any]]
"""A config topic and its payload."""

MIGRATE_DISCOVERY: Final = b'{"migrate_discovery":true}'
"""Published on an old per-entity config topic: the entity moves to a device config."""

_ATHLETE_ENTITIES: Final = (
    # component id, name, field, unit, device_class, icon
    ("reps_in_set", "Reps in set", "reps_in_set", None, None, "mdi:counter"),
    ("last_mcv", "Last mean concentric velocity", "last_mcv_mps", "m/s", "speed", None),
    ("velocity_loss", "Velocity loss", "velocity_loss_pct", "%", None, "mdi:trending-down"),
    ("pelvic_tilt", "Pelvic tilt", "tilt_deg", "°", None, "mdi:angle-acute"),
)


@dataclass(frozen=True, slots=True)
class Discovery:
    """Builds the device discovery configs of one hub, its athletes and its sensors."""

    topics: TopicTree
    prefix: str = "homeassistant"
    version: str | None = None

    @property
    def birth_topic(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.prefix}/status"

    @property
    def node_id(self) -> str:
        """This hub's id: every device and entity id of the hub starts with it."""
        return slug(f"{self.topics.prefix.replace('/', '_')}_{self.topics.hub}")

    @property
    def legacy_filter(self) -> str:
        """The per-entity config topics earlier versions of this hub published."""
        return f"{self.prefix}/+/{self.node_id}/+/config"

    def hub(self) -> DiscoveryConfig:
        """The hub as a device, with its own entity: online or not (status and last will)."""
        device: dict[str, Any] = {
            "identifiers": [self.node_id],
            "name": f"sensorhub {self.topics.hub}",
            "manufacturer": "sensorhub",
            "model": "Training hub",
        }
        if self.version:
            device["sw_version"] = self.version
        online = {
            "p": "binary_sensor",
            "name": "Online",
            "unique_id": f"{self.node_id}_hub_online",
            "state_topic": self.topics.hub_status,
            "value_template": "{{ value_json.state }}",
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
        }
        # No availability: the entity itself must show "offline", not go unavailable.
        payload = self._device(device, {"hub_online": online}, available=False)
        return self._topic(self.node_id), payload

    def athlete(self, athlete: str) -> DiscoveryConfig:
        """An athlete as a device: reps in set, last MCV, velocity loss and pelvic tilt."""
        key = f"athlete_{slug(athlete)}"
        device = {
            "identifiers": [f"{self.node_id}_{key}"],
            "name": f"{athlete} (sensorhub)",
            "manufacturer": "sensorhub",
            "model": "Athlete",
            "via_device": self.node_id,
        }
        components: dict[str, dict[str, Any]] = {}
        for component_id, name, field, unit, device_class, icon in _ATHLETE_ENTITIES:
            component: dict[str, Any] = {
                "p": "sensor",
                "name": name,
                "unique_id": f"{self.node_id}_{key}_{component_id}",
                "value_template": f"{{{{ value_json.{field} }}}}",
                "state_class": "measurement",
            }
            if unit is not None:
                component["unit_of_measurement"] = unit
            if device_class is not None:
                component["device_class"] = device_class
            if icon is not None:
                component["icon"] = icon
            if field == "last_mcv_mps":
                component["suggested_display_precision"] = 2
            components[component_id] = component
        payload = self._device(device, components)
        payload["state_topic"] = self.topics.athlete(athlete, "state")
        return self._topic(f"{self.node_id}_{key}"), payload

    def sensor(self, address: str, *, role: str = "", athlete: str = "") -> DiscoveryConfig:
        """A sensor as a device: its battery and its connection."""
        key = f"sensor_{sensor_id(address)}"
        label = f"{role} sensor {address}".strip() if role else f"Sensor {address}"
        device: dict[str, Any] = {
            "identifiers": [f"{self.node_id}_{key}"],
            "connections": [["bluetooth", address.lower()]],
            "name": f"{athlete} {label}".strip() if athlete else label,
            "manufacturer": "sensorhub",
            "model": f"{role} sensor".strip() if role else "Motion sensor",
            "via_device": self.node_id,
        }
        battery = {
            "p": "sensor",
            "name": "Battery",
            "unique_id": f"{self.node_id}_{key}_battery",
            "value_template": "{{ value_json.battery_pct }}",
            "unit_of_measurement": "%",
            "device_class": "battery",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }
        connection = {
            "p": "binary_sensor",
            "name": "Connection",
            "unique_id": f"{self.node_id}_{key}_connection",
            "value_template": "{{ 'ON' if value_json.online else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
        }
        payload = self._device(device, {"battery": battery, "connection": connection})
        payload["state_topic"] = self.topics.sensor_status(address)
        return self._topic(f"{self.node_id}_{key}"), payload

    def sensor_topic(self, address: str) -> str:
        """The config topic of one sensor, to clear (empty retained) when it is forgotten."""
        return self._topic(f"{self.node_id}_sensor_{sensor_id(address)}")

    def sensor_unique_id_prefix(self, address: str) -> str:
        """What the ``unique_id`` of each of a sensor's entities starts with."""
        return f"{self.node_id}_sensor_{sensor_id(address)}_"

    def legacy_unique_id(self, topic: str, payload: bytes) -> str | None:
        """The ``unique_id`` of an old per-entity config of this hub, else None.

        None for other topics (device configs, other hubs), an empty payload (already
        cleared) and anything that is not such a config. A :data:`MIGRATE_DISCOVERY`
        left by a move that was cut short gives ``""``: the topic is only to be cleared.
        """
        levels = topic.split("/")
        prefix = self.prefix.split("/")
        if len(levels) != len(prefix) + 4 or levels[: len(prefix)] != prefix:
            return None
        component, node, _object_id, last = levels[len(prefix) :]
        if component == "device" or node != self.node_id or last != "config" or not payload:
            return None
        try:
            config = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(config, dict):
            return None
        if config.get("migrate_discovery", config.get("migr_discvry")) is True:
            return ""
        unique_id = config.get("unique_id", config.get("uniq_id"))
        return unique_id if isinstance(unique_id, str) and unique_id else None

    def _topic(self, object_id: str) -> str:
        return f"{self.prefix}/device/{object_id}/config"

    def _device(
        self,
        device: dict[str, Any],
        components: dict[str, dict[str, Any]],
        *,
        available: bool = True,
    ) -> dict[str, Any]:
        origin: dict[str, Any] = {"name": "sensorhub"}
        if self.version:
            origin["sw_version"] = self.version
        payload: dict[str, Any] = {"dev": device, "o": origin, "cmps": components, "qos": 1}
        if available:
            payload["availability"] = [
                {
                    "topic": self.topics.hub_status,
                    "value_template": "{{ value_json.state }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ]
        return payload


def unique_ids(config: dict[str, Any]) -> set[str]:
    """The ``unique_id`` of every entity in one device config."""
    return {
        str(component["unique_id"])
        for component in config.get("cmps", {}).values()
        if "unique_id" in component
    }
