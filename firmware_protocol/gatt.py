"""GATT layout of a sensor: UUIDs of the custom service and the standard ones it carries.

See PROTOCOL.md, "GATT". The custom UUIDs share one 128-bit base and differ in the
16 bits at offset 4..8 of the string form, the way the Bluetooth SIG base UUID does.
"""

from __future__ import annotations

from typing import Final

_BASE: Final = "f3a1{:04x}-6c1e-4b7a-9d52-5e8c2a7b4d90"

SERVICE_UUID: Final = _BASE.format(0x0001)
"""The sensorhub sensor service (primary)."""
DATA_CHAR_UUID: Final = _BASE.format(0x0002)
"""Data frames (IMU or bar-velocity samples): notify. Needs an encrypted link."""
STATUS_CHAR_UUID: Final = _BASE.format(0x0003)
"""Status frames (battery, temperature, flags): read and notify. Needs an encrypted link."""
CONTROL_POINT_UUID: Final = _BASE.format(0x0004)
"""Commands in (write with response), responses out (indicate). Needs an encrypted link."""

DEVICE_INFORMATION_SERVICE_UUID: Final = "0000180a-0000-1000-8000-00805f9b34fb"
MANUFACTURER_NAME_UUID: Final = "00002a29-0000-1000-8000-00805f9b34fb"
MODEL_NUMBER_UUID: Final = "00002a24-0000-1000-8000-00805f9b34fb"
SERIAL_NUMBER_UUID: Final = "00002a25-0000-1000-8000-00805f9b34fb"
HARDWARE_REVISION_UUID: Final = "00002a27-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION_UUID: Final = "00002a26-0000-1000-8000-00805f9b34fb"

BATTERY_SERVICE_UUID: Final = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID: Final = "00002a19-0000-1000-8000-00805f9b34fb"

ATT_HEADER_SIZE: Final = 3
"""Bytes of an ATT notification/indication that are not payload (opcode + handle)."""
DEFAULT_ATT_MTU: Final = 23
"""The ATT MTU before any exchange (Core Spec Vol 3, Part F, 3.2.8)."""
PREFERRED_ATT_MTU: Final = 247
"""What the firmware offers; 247 fills one LE Data Length Extension packet."""
