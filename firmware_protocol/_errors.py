"""The package's errors: one base, and a subclass per kind of fault."""

from __future__ import annotations


class FirmwareProtocolError(Exception):
    """Base class of every error raised by ``firmware_protocol``."""


class MalformedFrameError(FirmwareProtocolError, ValueError):
    """Bytes that claim to be a frame but cannot be one: short, inconsistent or out of range."""


class UnsupportedVersionError(MalformedFrameError):
    """A frame written for a protocol version this package does not speak."""


class ScenarioError(FirmwareProtocolError, ValueError):
    """A motion scenario (file or preset) that cannot be played: names the bad field."""
