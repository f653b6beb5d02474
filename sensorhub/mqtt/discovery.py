"""Home Assistant MQTT discovery: the retained configs that make sensorhub's entities appear.

Each entity is one retained config on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (Home Assistant's
documented layout). The configs point at sensorhub's own retained topics (athlete state,
sensor status) with a ``value_template``, so Home Assistant reads the same payloads as
every other dashboard and nothing is published twice. Availability follows the hub
status topic, whose last will says ``offline`` when the hub dies.

Configs are sent on connect and when Home Assistant announces itself (``online`` on
``<discovery_prefix>/status``, its birth message), never on every update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sensorhub.mqtt.topics import TopicTree, sensor_id, slug

__all__ = ["Discovery", "DiscoveryConfig"]

DiscoveryConfig = tuple[str, dict[str, Any]]
"""A config topic and its payload."""

_ATHLETE_ENTITIES: Final = (
    # object suffix, name, field, unit, device_class, icon
    ("reps_in_set", "Reps in set", "reps_in_set", None, None, "mdi:counter"),
    ("last_mcv", "Last mean concentric velocity", "last_mcv_mps", "m/s", "speed", None),
    ("velocity_loss", "Velocity loss", "velocity_loss_pct", "%", None, "mdi:trending-down"),
    ("pelvic_tilt", "Pelvic tilt", "tilt_deg", "°", None, "mdi:angle-acute"),
)


@dataclass(frozen=True, slots=True)
class Discovery:
    """Builds the discovery configs of one hub's athletes and sensors."""

    topics: TopicTree
    prefix: str = "homeassistant"
    version: str | None = None

    @property
    def birth_topic(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.prefix}/status"

    @property
    def node_id(self) -> str:
        """This hub's node id: the same for every entity it owns."""
        return slug(f"{self.topics.prefix.replace('/', '_')}_{self.topics.hub}")

    def hub_device(self) -> dict[str, Any]:
        """The hub as a Home Assistant device; athletes and sensors hang off it."""
        device: dict[str, Any] = {
            "identifiers": [self.node_id],
            "name": f"sensorhub {self.topics.hub}",
            "manufacturer": "sensorhub",
            "model": "Training hub",
        }
        if self.version:
            device["sw_version"] = self.version
        return device

    def hub(self) -> list[DiscoveryConfig]:
        """The hub's own entity: online or not, from its retained status (and last will)."""
        payload = self._common("hub_online", "Online", self.hub_device())
        del payload["availability"]  # the entity itself must show "offline", not go unavailable
        payload |= {
            "state_topic": self.topics.hub_status,
            "value_template": "{{ value_json.state }}",
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
        }
        return [(self._topic("binary_sensor", "hub_online"), payload)]

    def athlete(self, athlete: str) -> list[DiscoveryConfig]:
        """Reps in set, last MCV, velocity loss and pelvic tilt of one athlete."""
        key = f"athlete_{slug(athlete)}"
        device = {
            "identifiers": [f"{self.node_id}_{key}"],
            "name": f"{athlete} (sensorhub)",
            "manufacturer": "sensorhub",
            "model": "Athlete",
            "via_device": self.node_id,
        }
        configs = []
        for suffix, name, field, unit, device_class, icon in _ATHLETE_ENTITIES:
            payload = self._common(f"{key}_{suffix}", name, device)
            payload |= {
                "state_topic": self.topics.athlete(athlete, "state"),
                "value_template": f"{{{{ value_json.{field} }}}}",
                "state_class": "measurement",
            }
            if unit is not None:
                payload["unit_of_measurement"] = unit
            if device_class is not None:
                payload["device_class"] = device_class
            if icon is not None:
                payload["icon"] = icon
            if field == "last_mcv_mps":
                payload["suggested_display_precision"] = 2
            configs.append((self._topic("sensor", f"{key}_{suffix}"), payload))
        return configs

    def sensor(self, address: str, *, role: str = "", athlete: str = "") -> list[DiscoveryConfig]:
        """Battery and connection of one sensor."""
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
        status = self.topics.sensor_status(address)
        battery = self._common(f"{key}_battery", "Battery", device)
        battery |= {
            "state_topic": status,
            "value_template": "{{ value_json.battery_pct }}",
            "unit_of_measurement": "%",
            "device_class": "battery",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }
        connection = self._common(f"{key}_connection", "Connection", device)
        connection |= {
            "state_topic": status,
            "value_template": "{{ 'ON' if value_json.online else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
        }
        return [
            (self._topic("sensor", f"{key}_battery"), battery),
            (self._topic("binary_sensor", f"{key}_connection"), connection),
        ]

    def sensor_topics(self, address: str) -> list[str]:
        """The config topics of one sensor, to clear (empty retained) when it is forgotten."""
        return [topic for topic, _payload in self.sensor(address)]

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"

    def _common(self, object_id: str, name: str, device: dict[str, Any]) -> dict[str, Any]:
        origin: dict[str, Any] = {"name": "sensorhub"}
        if self.version:
            origin["sw_version"] = self.version
        return {
            "name": name,
            "unique_id": f"{self.node_id}_{object_id}",
            "device": device,
            "origin": origin,
            "availability": [
                {
                    "topic": self.topics.hub_status,
                    "value_template": "{{ value_json.state }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
        }
