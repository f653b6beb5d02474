"""bleak's errors become sensorhub's by their type and fields, never by the words they use."""

from __future__ import annotations

from pathlib import Path

import pytest
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError

import sensorhub
from sensorhub.ble.bumble_backend import PairingRefusedError
from sensorhub.ble.errors import bluetooth_error, bluetooth_errors
from sensorhub.ble.link import _Backoff
from sensorhub.errors import (
    BluetoothError,
    BondLostError,
    PairingError,
    SensorhubError,
    SensorNotFoundError,
)

ADDRESS = "C0:DE:00:00:00:01"


@pytest.mark.parametrize(
    "error",
    [
        BleakGATTProtocolError(0x05),  # insufficient authentication (any stack, by code)
        BleakGATTProtocolError(0x0F),  # insufficient encryption
        BleakDBusError("org.bluez.Error.AuthenticationFailed", []),  # BlueZ, on connect
    ],
    ids=["att-authentication", "att-encryption", "bluez-authentication-failed"],
)
def test_a_sensor_that_refused_our_keys_has_lost_its_bond(error: BleakError) -> None:
    translated = bluetooth_error(error, ADDRESS, f"connecting to {ADDRESS}")
    assert isinstance(translated, BondLostError)
    assert translated.address == ADDRESS
    # And the link waits for a new pairing rather than retrying at once.
    assert _Backoff().next(translated) == _Backoff().next(BondLostError(ADDRESS))


@pytest.mark.parametrize(
    "error",
    [
        # Words are not a type: a message that mentions authentication is not a lost bond.
        BleakError("Insufficient Authentication, AuthenticationFailed"),
        BleakGATTProtocolError(0x0A),  # attribute not found
        BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]),
    ],
    ids=["words", "att-other", "bluez-other"],
)
def test_any_other_failure_is_a_bluetooth_error_of_the_kind_asked(error: BleakError) -> None:
    translated = bluetooth_error(error, ADDRESS, f"connecting to {ADDRESS}", SensorNotFoundError)
    assert type(translated) is SensorNotFoundError
    assert str(translated).startswith(f"connecting to {ADDRESS} failed: ")
    assert _Backoff().next(translated) < _Backoff().next(BondLostError(ADDRESS))


def test_a_refused_pairing_says_how_to_put_the_sensor_in_pairing_mode() -> None:
    refused = PairingRefusedError(f"{ADDRESS} refused to pair (not in pairing mode)")
    translated = bluetooth_error(refused, ADDRESS, f"pairing with {ADDRESS}")
    assert isinstance(translated, PairingError)
    assert "not in pairing mode" in str(translated)
    assert "press its button" in str(translated)


def test_a_message_that_names_the_sensor_is_not_said_twice() -> None:
    said = f"connecting to {ADDRESS} failed: no answer"
    assert str(bluetooth_error(BleakError(said), ADDRESS, f"connecting to {ADDRESS}")) == said
    radio = bluetooth_error(BleakError("adapter gone"), None, "scanning")
    assert str(radio) == "scanning failed: adapter gone"


async def test_a_block_of_radio_calls_raises_only_sensorhub_errors() -> None:
    async def scan() -> None:
        raise BleakError("Bluetooth adapter not found")

    expected = pytest.raises(BluetoothError, match="scanning failed: Bluetooth adapter")
    with expected as info, bluetooth_errors(None, "scanning"):
        await scan()
    assert isinstance(info.value, SensorhubError)
    assert isinstance(info.value.__cause__, BleakError)
    # Everything else passes through as it was.
    with pytest.raises(TimeoutError), bluetooth_errors(None, "scanning"):
        raise TimeoutError


def test_only_the_bluetooth_layer_names_bleaks_errors() -> None:
    package = Path(sensorhub.__file__).parent
    outside = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "ble" not in path.relative_to(package).parts[:1] and "bleak.exc" in path.read_text()
    ]
    assert outside == []
