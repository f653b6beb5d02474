"""The topic tree, ``<prefix>/<hub>/…``: every topic sensorhub publishes or listens on.

::

    <prefix>/<hub>/status                       retained hub availability (also the last will)
    <prefix>/<hub>/sensors/<sensor_id>/status   retained sensor status; empty once forgotten
    <prefix>/<hub>/athletes/<athlete>/tilt      live, QoS 0, latest wins
    <prefix>/<hub>/athletes/<athlete>/velocity  live, QoS 0, latest wins
    <prefix>/<hub>/athletes/<athlete>/reps      QoS 1, every rep, through the outbox
    <prefix>/<hub>/athletes/<athlete>/sets      QoS 1, every set, through the outbox
    <prefix>/<hub>/athletes/<athlete>/last_set  retained, QoS 1
    <prefix>/<hub>/athletes/<athlete>/alerts    QoS 1, through the outbox
    <prefix>/<hub>/athletes/<athlete>/state     retained summary for dashboards
    <prefix>/<hub>/events                       QoS 1, reps, sets, alerts, sessions in order
    <prefix>/<hub>/commands                     subscribed: JSON commands
    <prefix>/<hub>/commands/response            replies to commands

Athlete names and sensor addresses become one topic level each through :func:`slug`, so
a name with a slash or a ``#`` can never open a wildcard or a level of its own.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

from sensorhub.errors import ConfigError

__all__ = ["AthleteTopic", "TopicTree", "sensor_id", "slug"]

AthleteTopic = Literal["tilt", "velocity", "reps", "sets", "last_set", "alerts", "state"]

_LEVEL: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
_NOT_SLUG: Final = re.compile(r"[^a-z0-9_-]+")


def slug(name: str) -> str:
    """One safe topic level from a name: lower case, ``[a-z0-9_-]`` only.

    Accents are dropped (``Zoë`` → ``zoe``), anything else becomes ``_``. A name with
    nothing left (``"???"``) gets a stable ``id_<hash>`` so it still has a topic.
    """
    if not name:
        raise ConfigError("a name for an MQTT topic level cannot be empty")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    level = _NOT_SLUG.sub("_", ascii_name.lower()).strip("_")
    if not level:
        return "id_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return level


def sensor_id(address: str) -> str:
    """A sensor's topic level: its address without colons, lower case (``aabbccddeeff``)."""
    return slug(address.replace(":", ""))


@dataclass(frozen=True, slots=True)
class TopicTree:
    """Topic names under ``<prefix>/<hub>``; both are checked when made.

    ``prefix`` may have several levels (``gym/rack1``); ``hub`` is one level.
    """

    prefix: str = "sensorhub"
    hub: str = "hub"

    def __post_init__(self) -> None:
        levels = self.prefix.split("/")
        if not self.prefix or not all(_LEVEL.match(level) for level in levels):
            raise ConfigError(
                f"MQTT prefix {self.prefix!r}: use topic levels of letters, digits, '_', '-' "
                "and '.', separated by '/' (no '+', '#', empty levels or spaces), e.g. sensorhub"
            )
        if not _LEVEL.match(self.hub):
            raise ConfigError(
                f"hub name {self.hub!r}: use one topic level of letters, digits, '_', '-' "
                "and '.' (no '/', '+', '#' or spaces), e.g. rack1"
            )

    @property
    def base(self) -> str:
        """``<prefix>/<hub>``."""
        return f"{self.prefix}/{self.hub}"

    @property
    def hub_status(self) -> str:
        """Retained hub availability: ``{"state": "online"|"offline", …}``."""
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        """Every rep, set, alert and session record, in order."""
        return f"{self.base}/events"

    @property
    def commands(self) -> str:
        """Where commands arrive."""
        return f"{self.base}/commands"

    @property
    def command_response(self) -> str:
        """Where replies to commands go."""
        return f"{self.base}/commands/response"

    def sensor_status(self, address: str) -> str:
        """Retained status of one sensor, by its address."""
        return f"{self.base}/sensors/{sensor_id(address)}/status"

    def athlete(self, athlete: str, leaf: AthleteTopic) -> str:
        """One of an athlete's topics, e.g. ``athlete("Ann", "reps")``."""
        return f"{self.base}/athletes/{slug(athlete)}/{leaf}"
