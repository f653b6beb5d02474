"""The sensor registry: which sensors this hub connects to, their roles and athletes.

One JSON file in the state directory, written atomically (temporary file + rename) so
a reader in another process (a running hub, watching for changes) never sees half a
file. Every change reads, edits and writes the file under an exclusive lock beside it,
so changes made at once by several processes (``pair`` while a running hub saves a
learned tilt axis) all land. Only sensors in the registry are ever connected.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

from sensorhub.errors import ConfigError, StateError
from sensorhub.state import changing, replace_file

_MAC_ADDRESS: Final = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_UUID: Final = re.compile(r"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


def check_address(value: str) -> str:
    """A sensor's address, upper case; ConfigError if it cannot be one.

    Bluetooth addresses look like ``AA:BB:CC:DD:EE:FF``; macOS (CoreBluetooth) names a
    device by a UUID of its own instead.
    """
    if _MAC_ADDRESS.fullmatch(value) or _UUID.fullmatch(value):
        return value.upper()
    raise ConfigError(
        f"{value!r} is not a sensor address: give it as `sensorhub scan` shows it, "
        "e.g. AA:BB:CC:DD:EE:FF (on macOS a UUID)"
    )


Role = Literal["bar", "pelvis"]
ROLES: tuple[Role, ...] = get_args(Role)
SensorKindName = Literal["imu", "bar_velocity"]
FILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class RegisteredSensor:
    """A sensor the hub has bonded with, and what it is for."""

    address: str
    kind: SensorKindName
    role: Role
    athlete: str
    name: str = ""
    paired_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    calibration: dict[str, Any] | None = None
    """Pelvis neutral pose and whatever else calibration found (set by ``pair``)."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if not self.athlete.strip():
            raise ConfigError("athlete name must not be empty")
        if self.kind not in get_args(SensorKindName):
            raise ConfigError(f"sensor kind {self.kind!r} is not imu or bar_velocity")

    @property
    def label(self) -> str:
        """A name for people: the given one, else role and athlete."""
        return self.name or f"{self.athlete}'s {self.role}"

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as ``sensors list --json`` prints it."""
        return asdict(self)


class SensorRegistry:
    """Read and change the registry file; every method re-reads it, so processes agree."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def signature(self) -> tuple[int, int] | None:
        """Return something that changes whenever the file does (None: no file)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def load(self) -> dict[str, RegisteredSensor]:
        """Return the registered sensors by address (upper case)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateError(f"cannot read sensor registry {self.path}: {exc.strerror}") from exc
        try:
            document = json.loads(text)
            if document.get("version") != FILE_VERSION:
                raise StateError(
                    f"sensor registry {self.path} is version {document.get('version')!r}; "
                    f"this sensorhub reads version {FILE_VERSION}"
                )
            sensors = [RegisteredSensor(**entry) for entry in document["sensors"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"sensor registry {self.path} is damaged ({exc}); fix or remove it "
                "(the bonds themselves are kept separately)"
            ) from exc
        return {sensor.address.upper(): sensor for sensor in sensors}

    def get(self, address: str) -> RegisteredSensor | None:
        """Return one registered sensor, or None."""
        return self.load().get(address.upper())

    def put(self, sensor: RegisteredSensor) -> None:
        """Add or replace a sensor."""
        with self._editing() as sensors:
            sensors[sensor.address.upper()] = replace(sensor, address=sensor.address.upper())

    def forget(self, address: str) -> RegisteredSensor:
        """Remove a sensor; raise ConfigError if it is not registered (the file is not written)."""
        with self._editing() as sensors:
            removed = sensors.pop(address.upper(), None)
            if removed is None:
                raise ConfigError(f"no registered sensor has address {address}")
        return removed

    def rename(self, address: str, name: str) -> RegisteredSensor:
        """Give a sensor a name for people."""
        with self._editing() as sensors:
            current = sensors.get(address.upper())
            if current is None:
                raise ConfigError(f"no registered sensor has address {address}")
            sensors[address.upper()] = renamed = replace(current, name=name)
        return renamed

    def update_calibration(self, address: str, values: dict[str, Any]) -> RegisteredSensor:
        """Add ``values`` to a sensor's calibration, keeping what else it holds."""
        with self._editing() as sensors:
            current = sensors.get(address.upper())
            if current is None:
                raise ConfigError(f"no registered sensor has address {address}")
            calibration = {**(current.calibration or {}), **values}
            sensors[address.upper()] = updated = replace(current, calibration=calibration)
        return updated

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, RegisteredSensor]]:
        """Read, let the caller change, write back: one change at a time across processes.

        A caller that raises inside the ``with`` changes nothing: the file is not written.
        """
        with changing(self.path, "sensor registry"):
            sensors = self.load()
            yield sensors
            document = {
                "version": FILE_VERSION,
                "sensors": [s.to_json() for s in sorted(sensors.values(), key=lambda s: s.address)],
            }
            replace_file(self.path, json.dumps(document, indent=2) + "\n", "sensor registry")
