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


_HOST_PORT_SCHEMES: Final = {"tcp-client": "127.0.0.1:7001", "tcp-server": "_:7001"}
"""Bumble transports that take ``HOST:PORT``, with an example of each."""


def check_ble_spec(spec: str) -> str:
    """Validate a ``--ble`` value; raise ConfigError naming the accepted forms."""
    if spec in {NATIVE, VIRTUAL}:
        return spec
    scheme, sep, rest = spec.partition(":")
    if scheme not in _BUMBLE_SCHEMES or not sep:
        raise ConfigError(f"--ble {spec!r} is not a radio I know; {BLE_HELP}")
    if example := _HOST_PORT_SCHEMES.get(scheme):
        host, colon, port = rest.rpartition(":")
        if not (colon and host and port.isdigit() and 0 <= int(port) <= 65535):
            raise ConfigError(
                f"--ble {spec!r}: {scheme} takes a host and a port, {scheme}:HOST:PORT, "
                f"e.g. {scheme}:{example}"
            )
    elif not rest:
        raise ConfigError(
            f"--ble {spec!r}: say which device after the colon, e.g. usb:0 or serial:/dev/ttyACM0"
        )
    return spec
