"""What ``--ble`` may say: the radio choices and their check, without loading any radio.

Kept apart from :mod:`sensorhub.ble.radio` (bleak, Bumble, the virtual sensors) so that
the command line and the configuration can validate a choice cheaply.
"""

from __future__ import annotations

from typing import Final

from sensorhub.errors import ConfigError

__all__ = ["BLE_HELP", "NATIVE", "VIRTUAL", "check_ble_spec"]

NATIVE: Final = "native"
VIRTUAL: Final = "virtual"
_BUMBLE_SCHEMES: Final = (
    "usb",
    "pyusb",
    "serial",
    "tcp-client",
    "tcp-server",
    "udp",
    "unix",
    "ws-client",
    "ws-server",
    "hci-socket",
    "vhci",
    "android-netsim",
    "android-emulator",
    "file",
    "pty",
)
BLE_HELP: Final = (
    "radio: 'native' (the OS Bluetooth stack via bleak), 'virtual' (virtual sensors in "
    "this process), or a Bumble transport such as usb:0, serial:/dev/ttyACM0, "
    "tcp-client:127.0.0.1:7001"
)


def check_ble_spec(spec: str) -> str:
    """Validate a ``--ble`` value; raise ConfigError naming the accepted forms."""
    if spec in {NATIVE, VIRTUAL}:
        return spec
    scheme, sep, _ = spec.partition(":")
    if scheme in _BUMBLE_SCHEMES and sep:
        return spec
    raise ConfigError(f"--ble {spec!r} is not a radio I know; {BLE_HELP}")
