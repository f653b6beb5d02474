"""sensorhub's errors: one base, a few kinds, each saying whose fault it was."""

from __future__ import annotations


class SensorhubError(Exception):
    """Base class of every error sensorhub raises on purpose."""


class ConfigError(SensorhubError, ValueError):
    """A setting or an argument that cannot work; the message names it and the fix."""


class StateError(SensorhubError):
    """The state directory (registry, bonds, sessions) cannot be read or written."""


class BluetoothError(SensorhubError):
    """The radio or a sensor did not do what was asked (wraps bleak's and Bumble's errors)."""


class RadioLostError(BluetoothError):
    """The hub's own radio went away (its transport closed, its controller stopped
    answering, the OS adapter vanished): no sensor's fault. The hub reopens it."""


class SensorNotFoundError(BluetoothError):
    """No sensor answered at that address: out of range, off, or connected elsewhere."""


class PairingError(BluetoothError):
    """Bonding with a sensor failed or was refused."""


class BondLostError(PairingError):
    """The sensor no longer holds this hub's bond: it was reset, or bonded with another
    hub. Only pairing it again (in pairing mode) brings it back."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"{address} no longer has this hub's bond (it was reset, or paired with another "
            "hub): press its button and pair it again"
        )
        self.address = address


class SensorCommandError(BluetoothError):
    """A sensor answered a control-point command with an error status."""


class MqttError(SensorhubError):
    """The MQTT broker could not be reached, refused us, or dropped the connection."""


class CommandError(SensorhubError, ValueError):
    """A command (from the MQTT command topic or a person) is malformed or cannot be done now."""
