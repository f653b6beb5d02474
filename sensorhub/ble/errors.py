"""bleak's errors said as sensorhub's: the one place that reads what went wrong on the radio.

bleak's backends (the Bumble one here included) raise :class:`~bleak.exc.BleakError`;
above :mod:`sensorhub.ble` only :class:`~sensorhub.errors.BluetoothError` is seen.
:func:`bluetooth_error` tells the kind of a failure from its type and its fields (an SMP
reason, an ATT error code, a D-Bus error name), never from the words of its message, and
:func:`bluetooth_errors` translates whatever a block of radio calls raises.

    with bluetooth_errors(address, "pairing"):
        await client.pair()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError
from bleak.exc import BleakGATTProtocolErrorCode as Att

from sensorhub.ble.bumble_backend import PairingRefusedError
from sensorhub.errors import BluetoothError, BondLostError, PairingError

__all__ = ["bluetooth_error", "bluetooth_errors", "not_in_pairing_mode"]

BOND_REFUSED_ATT_CODES: Final = frozenset(
    {Att.INSUFFICIENT_AUTHENTICATION, Att.INSUFFICIENT_ENCRYPTION}
)
"""What a sensor answers a request with when it no longer holds the keys we use: it lost
our bond (reset, or bonded with another hub). Any stack that reports ATT errors by code."""

BOND_REFUSED_DBUS_ERRORS: Final = frozenset({"org.bluez.Error.AuthenticationFailed"})
"""BlueZ's name for a peer that refused our keys when connecting."""


def not_in_pairing_mode(sensor: str) -> str:
    """Why a sensor takes no new bond, and how to make it take one."""
    return (
        f"{sensor} is not in pairing mode: it is bonded (to another hub, or to this one "
        "before its bond was lost) and accepts no new bond. Put it in pairing mode, then "
        "pair again: press its button (it then accepts a bond for a minute); for the "
        "virtual sensors of `sensorhub emulate`, send the emulator SIGUSR1 "
        "(`kill -USR1 PID`) or start it with `--pairing-window SECONDS`"
    )


def bluetooth_error(
    error: BleakError,
    address: str | None,
    doing: str,
    kind: type[BluetoothError] = BluetoothError,
) -> BluetoothError:
    """``error``, raised while ``doing`` something (a phrase: "pairing with AA:…") with the
    sensor at ``address`` (None: with the radio itself), as the error that says what it means:

    - the sensor refused to pair (not in pairing mode): :class:`PairingError`;
    - the sensor refused our keys (it lost our bond): :class:`BondLostError`;
    - anything else: ``kind``, saying what was being done unless bleak's message does.
    """
    if isinstance(error, PairingRefusedError):
        return PairingError(not_in_pairing_mode(address or "the sensor"))
    if address is not None and (
        (isinstance(error, BleakGATTProtocolError) and error.code in BOND_REFUSED_ATT_CODES)
        or (isinstance(error, BleakDBusError) and error.dbus_error in BOND_REFUSED_DBUS_ERRORS)
    ):
        return BondLostError(address)
    said = str(error) or type(error).__name__
    if address is not None and address.upper() in said.upper():
        return kind(said)  # our own backend's messages name the sensor and the step
    return kind(f"{doing} failed: {said}")


@contextlib.contextmanager
def bluetooth_errors(
    address: str | None, doing: str, kind: type[BluetoothError] = BluetoothError
) -> Iterator[None]:
    """Raise what the block raises, a :class:`BleakError` as :func:`bluetooth_error` says it."""
    try:
        yield
    except BleakError as exc:
        raise bluetooth_error(exc, address, doing, kind) from exc
