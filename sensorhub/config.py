"""The service's configuration: a TOML file, command-line overrides, checked at start.

Every value is validated before anything starts, and an error names the file, the
table and key, the bad value and what would work::

    [hub]
    name = "rack-1"            # the hub's id in MQTT topics
    ble = "native"             # native | virtual | a Bumble transport (usb:0, tcp-client:…)
    state_dir = "~/sensorhub"  # registry, bonds, sessions (default: $SENSORHUB_STATE_DIR or XDG)
    imu_rate_hz = 200
    bar_rate_hz = 100

    [mqtt]
    url = "mqtts://coach@broker.local"   # none: an embedded broker on localhost
    password_env = "SENSORHUB_MQTT_PASSWORD"
    prefix = "sensorhub"
    live_rate_hz = 10
    discovery = true
    discovery_prefix = "homeassistant"
    embedded_port = 1883

    [analysis]
    velocity_loss_alert_pct = 20
    set_gap_s = 45

    [session]
    auto_start = true
    exercise = "hip_thrust"

    [athletes.Ada]
    exercise = "squat"
    load_kg = 100
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from sensorhub.analysis.exercises import EXERCISES
from sensorhub.ble.spec import check_ble_spec
from sensorhub.errors import ConfigError

__all__ = [
    "EXERCISES",
    "LIVE_RATE_HZ_LIMITS",
    "LOAD_KG_LIMITS",
    "PASSWORD_ENV",
    "SET_GAP_S_LIMITS",
    "VELOCITY_LOSS_ALERT_PCT_LIMITS",
    "AthleteSettings",
    "ServiceConfig",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PASSWORD_ENV: Final = "SENSORHUB_MQTT_PASSWORD"  # noqa: S105 - a variable name
SET_GAP_S_LIMITS: Final = (6.0, 3600.0)
LIVE_RATE_HZ_LIMITS: Final = (0.1, 100.0)
VELOCITY_LOSS_ALERT_PCT_LIMITS: Final = (1.0, 99.0)
LOAD_KG_LIMITS: Final = (0.0, 1000.0)
"""Seconds without a rep that end a set: above the longest pause inside a set (a
rest-pause starts at 5 s), and at most an hour. The service and the analysis commands
take the same range."""


@dataclass(frozen=True, slots=True)
class AthleteSettings:
    """What one athlete trains: the exercise and the load on the bar (kg, if known)."""

    exercise: str = "hip_thrust"
    load_kg: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``sensorhub run`` needs; build with :meth:`load` or the constructor."""

    hub_name: str = "hub"
    ble: str = "native"
    state_dir: Path | None = None
    imu_rate_hz: int = 200
    bar_rate_hz: int = 100
    broker_url: str | None = None
    """None: start an embedded broker on localhost."""
    mqtt_password: str | None = None
    mqtt_prefix: str = "sensorhub"
    live_rate_hz: float = 10.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    embedded_port: int = 1883
    velocity_loss_alert_pct: float = 20.0
    set_gap_s: float = 45.0
    auto_start: bool = True
    exercise: str = "hip_thrust"
    """The exercise of athletes without a table of their own."""
    athletes: dict[str, AthleteSettings] = field(default_factory=dict)
    source: str = "defaults"
    """Where the values came from, for error messages."""

    def __post_init__(self) -> None:
        where = self.source
        if not _NAME.match(self.hub_name):
            raise ConfigError(
                f"{where}: [hub] name = {self.hub_name!r}: use 1-64 letters, digits, _ or - "
                "(it becomes an MQTT topic level)"
            )
        try:
            check_ble_spec(self.ble)
        except ConfigError as exc:
            raise ConfigError(f"{where}: [hub] ble: {exc}") from None
        _check_range(where, "hub", "imu_rate_hz", self.imu_rate_hz, 10, 1600)
        _check_range(where, "hub", "bar_rate_hz", self.bar_rate_hz, 10, 1000)
        if self.broker_url is not None and not re.match(r"^mqtts?://", self.broker_url):
            raise ConfigError(
                f"{where}: [mqtt] url = {self.broker_url!r}: must start with mqtt:// or "
                "mqtts://, e.g. mqtt://localhost:1883"
            )
        if not re.match(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", self.mqtt_prefix):
            raise ConfigError(
                f"{where}: [mqtt] prefix = {self.mqtt_prefix!r}: use topic levels of letters, "
                "digits, _ and - separated by / (no wildcards, no leading or trailing /)"
            )
        if not _NAME.match(self.discovery_prefix):
            raise ConfigError(
                f"{where}: [mqtt] discovery_prefix = {self.discovery_prefix!r}: one topic "
                "level, e.g. homeassistant"
            )
        _check_range(where, "mqtt", "live_rate_hz", self.live_rate_hz, *LIVE_RATE_HZ_LIMITS)
        _check_range(where, "mqtt", "embedded_port", self.embedded_port, 0, 65535)
        _check_range(
            where,
            "analysis",
            "velocity_loss_alert_pct",
            self.velocity_loss_alert_pct,
            *VELOCITY_LOSS_ALERT_PCT_LIMITS,
        )
        _check_range(where, "analysis", "set_gap_s", self.set_gap_s, *SET_GAP_S_LIMITS)
        _check_exercise(where, "session", self.exercise)
        for name, athlete in self.athletes.items():
            if not name.strip() or len(name) > 64:
                raise ConfigError(f"{where}: [athletes] {name!r}: names are 1-64 characters")
            _check_exercise(where, f"athletes.{name}", athlete.exercise)
            if athlete.load_kg is not None:
                _check_range(where, f"athletes.{name}", "load_kg", athlete.load_kg, *LOAD_KG_LIMITS)

    def athlete(self, name: str) -> AthleteSettings:
        """The settings of athlete ``name`` (the session's exercise when not configured)."""
        return self.athletes.get(name, AthleteSettings(exercise=self.exercise))

    def with_overrides(self, **overrides: Any) -> ServiceConfig:
        """A copy with the given values (None means: keep), validated again."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        if not changes:
            return self
        return replace(self, **changes, source=f"{self.source} with command-line options")

    @classmethod
    def load(cls, path: Path | None) -> ServiceConfig:
        """Read a TOML file (None: defaults); the MQTT password may come from the environment."""
        if path is None:
            return cls(mqtt_password=os.environ.get(PASSWORD_ENV))
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "config") -> ServiceConfig:
        """Parse and validate TOML text; unknown tables and keys are errors (typos)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        _only(source, "", data, {"hub", "mqtt", "analysis", "session", "athletes"})
        hub = _table(
            source, data, "hub", {"name", "ble", "state_dir", "imu_rate_hz", "bar_rate_hz"}
        )
        mqtt = _table(
            source,
            data,
            "mqtt",
            {
                "url",
                "password_env",
                "prefix",
                "live_rate_hz",
                "discovery",
                "discovery_prefix",
                "embedded_port",
            },
        )
        analysis = _table(source, data, "analysis", {"velocity_loss_alert_pct", "set_gap_s"})
        session = _table(source, data, "session", {"auto_start", "exercise"})
        athletes: dict[str, AthleteSettings] = {}
        for name, table in _table(source, data, "athletes", None).items():
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [athletes.{name}] must be a table")
            _only(source, f"athletes.{name}", table, {"exercise", "load_kg"})
            athletes[name] = AthleteSettings(
                exercise=_get(source, f"athletes.{name}", table, "exercise", str)
                or _get(source, "session", session, "exercise", str)
                or "hip_thrust",
                load_kg=_get(source, f"athletes.{name}", table, "load_kg", float),
            )
        password_env = _get(source, "mqtt", mqtt, "password_env", str) or PASSWORD_ENV
        state_dir = _get(source, "hub", hub, "state_dir", str)
        values: dict[str, Any] = {
            "hub_name": _get(source, "hub", hub, "name", str),
            "ble": _get(source, "hub", hub, "ble", str),
            "state_dir": Path(state_dir).expanduser() if state_dir else None,
            "imu_rate_hz": _get(source, "hub", hub, "imu_rate_hz", int),
            "bar_rate_hz": _get(source, "hub", hub, "bar_rate_hz", int),
            "broker_url": _get(source, "mqtt", mqtt, "url", str) or None,
            "mqtt_password": os.environ.get(password_env),
            "mqtt_prefix": _get(source, "mqtt", mqtt, "prefix", str),
            "live_rate_hz": _get(source, "mqtt", mqtt, "live_rate_hz", float),
            "discovery": _get(source, "mqtt", mqtt, "discovery", bool),
            "discovery_prefix": _get(source, "mqtt", mqtt, "discovery_prefix", str),
            "embedded_port": _get(source, "mqtt", mqtt, "embedded_port", int),
            "velocity_loss_alert_pct": _get(
                source, "analysis", analysis, "velocity_loss_alert_pct", float
            ),
            "set_gap_s": _get(source, "analysis", analysis, "set_gap_s", float),
            "auto_start": _get(source, "session", session, "auto_start", bool),
            "exercise": _get(source, "session", session, "exercise", str),
            "athletes": athletes,
        }
        return cls(**{k: v for k, v in values.items() if v is not None}, source=source)


def _check_range(where: str, table: str, key: str, value: float, low: float, high: float) -> None:  # noqa: PLR0917 - reads like the message it builds
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{where}: [{table}] {key} = {value!r}: allowed {low:g} to {high:g}")


def _check_exercise(where: str, table: str, exercise: str) -> None:
    if exercise not in EXERCISES:
        raise ConfigError(
            f"{where}: [{table}] exercise = {exercise!r}: one of {', '.join(EXERCISES)}"
        )


def _only(source: str, table: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        place = f"[{table}]" if table else "the top level"
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} in {place}; known: {', '.join(sorted(known))}"
        )


def _table(source: str, data: dict[str, Any], name: str, known: set[str] | None) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name} must be a table ([{name}])")
    if known is not None:
        _only(source, name, table, known)
    return table


_TYPE_NAMES: Final = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _get(source: str, table: str, data: dict[str, Any], key: str, kind: type[Any]) -> Any:
    if key not in data:
        return None
    value = data[key]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(f"{source}: [{table}] {key} = {value!r}: must be {_TYPE_NAMES[kind]}")
    return value
