"""Advertising data: how a scanner tells our sensors apart without connecting.

The sensor puts a manufacturer-specific data AD structure (type 0xFF) in its
advertisement: company ID 0xFFFF (the SIG's value reserved for tests, until a real one
is assigned), then the 6 bytes of :class:`SensorAdvertisement` (PROTOCOL.md, "Advertising").
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from firmware_protocol._errors import MalformedFrameError, UnsupportedVersionError
from firmware_protocol.frames import BATTERY_UNKNOWN, PROTOCOL_VERSION, SensorKind

COMPANY_ID: Final = 0xFFFF
MAGIC: Final = b"SH"


class AdvertisingFlags(enum.IntFlag):
    """Bits of the advertised flags byte."""

    PAIRING_MODE = 0x01
    """The sensor accepts a new bond (its button was pressed)."""
    STREAMING = 0x02
    LOW_BATTERY = 0x04


@dataclass(frozen=True, slots=True)
class SensorAdvertisement:
    """What a sensor says about itself in every advertisement."""

    layout: ClassVar = struct.Struct("<2sBBBB")
    """magic "SH", protocol version, sensor kind, battery %, flags."""

    kind: SensorKind
    battery_pct: int
    flags: AdvertisingFlags
    version: int = PROTOCOL_VERSION

    @property
    def pairing_mode(self) -> bool:
        """Whether the sensor accepts a new bond now."""
        return AdvertisingFlags.PAIRING_MODE in self.flags

    def __bytes__(self) -> bytes:
        return self.layout.pack(MAGIC, self.version, self.kind, self.battery_pct, self.flags)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Decode the manufacturer data that follows the company ID."""
        if len(payload) < cls.layout.size:
            raise MalformedFrameError(
                f"sensor advertisement needs {cls.layout.size} bytes, got {len(payload)}"
            )
        magic, version, kind, battery, flags = cls.layout.unpack_from(payload)
        if magic != MAGIC:
            raise MalformedFrameError(f"advertisement magic {magic!r} is not {MAGIC!r}")
        if version != PROTOCOL_VERSION:
            raise UnsupportedVersionError(f"sensor speaks protocol version {version}")
        if kind not in SensorKind._value2member_map_:
            raise MalformedFrameError(f"unknown sensor kind {kind} in advertisement")
        if battery > 100 and battery != BATTERY_UNKNOWN:
            raise MalformedFrameError(f"advertised battery {battery} % is outside 0..100")
        return cls(SensorKind(kind), battery, AdvertisingFlags(flags), version)

    @classmethod
    def from_manufacturer_data(cls, manufacturer_data: Mapping[int, bytes]) -> Self | None:
        """Return the advertisement in a scanner's ``{company_id: bytes}``, or None if not ours.

        Data under our company ID that does not start with our magic belongs to some
        other test device and is not ours either; ours but malformed raises.
        """
        payload = manufacturer_data.get(COMPANY_ID)
        if payload is None or not payload.startswith(MAGIC):
            return None
        return cls.decode(payload)
