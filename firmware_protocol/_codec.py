"""One entry point for every frame: dispatch on the preamble's frame type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from firmware_protocol._errors import MalformedFrameError, UnsupportedVersionError
from firmware_protocol.control import Command, Response, UnknownCommand, decode_command
from firmware_protocol.frames import (
    PREAMBLE,
    PROTOCOL_VERSION,
    BarDataFrame,
    FrameType,
    ImuDataFrame,
    StatusFrame,
    UnknownFrame,
)

Frame: TypeAlias = (
    ImuDataFrame | BarDataFrame | StatusFrame | Command | UnknownCommand | Response | UnknownFrame
)

_DECODERS: Final[dict[int, Callable[[bytes], Frame]]] = {
    FrameType.IMU_DATA: ImuDataFrame.decode,
    FrameType.BAR_DATA: BarDataFrame.decode,
    FrameType.STATUS: StatusFrame.decode,
    FrameType.COMMAND: decode_command,
    FrameType.RESPONSE: Response.decode,
}


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Decode one frame from the bytes of a notification, indication or write.

    Unknown frame types come back as :class:`UnknownFrame`; bytes that cannot be a
    frame raise :class:`MalformedFrameError` (a ``ValueError``), and nothing else is
    raised, whatever the input.
    """
    data = bytes(data)
    if len(data) < PREAMBLE.size:
        raise MalformedFrameError(f"a frame needs at least 2 bytes, got {len(data)}")
    version, frame_type = PREAMBLE.unpack_from(data)
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersionError(
            f"frame is protocol version {version}; this package speaks {PROTOCOL_VERSION}"
        )
    decoder = _DECODERS.get(frame_type)
    if decoder is None:
        return UnknownFrame(version=version, frame_type=frame_type, payload=data[2:])
    return decoder(data)
