"""Control-point commands and their responses (PROTOCOL.md, "Control point").

A command is written to the control point with a write request; the sensor answers
every command, known or not, well-formed or not, with one RESPONSE indication that
echoes the opcode and the token the hub chose, and carries a status code.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from firmware_protocol._errors import MalformedFrameError
from firmware_protocol.frames import (
    ACCEL_RANGES_G,
    BAR_RATES_HZ,
    GYRO_RANGES_DPS,
    IMU_RATES_HZ,
    PROTOCOL_VERSION,
    FrameType,
    SensorKind,
)

COMMAND_HEADER: Final = struct.Struct("<BBBB")
"""version, type (0x20), opcode, token."""
RESPONSE_HEADER: Final = struct.Struct("<BBBBB")
"""version, type (0x21), opcode, token, status."""


class Opcode(enum.IntEnum):
    """What a command asks of the sensor."""

    START_STREAMING = 0x01
    STOP_STREAMING = 0x02
    SET_CONFIG = 0x03
    GET_CONFIG = 0x04
    IDENTIFY = 0x05
    CALIBRATE = 0x06
    TIME_SYNC = 0x07


class Status(enum.IntEnum):
    """How the sensor took a command."""

    OK = 0x00
    UNKNOWN_COMMAND = 0x01
    MALFORMED = 0x02
    """The command's bytes do not fit its opcode (length, version)."""
    INVALID_PARAMETER = 0x03
    """Well-formed, but a value is not one the sensor supports."""
    INVALID_STATE = 0x04
    """Not now: e.g. changing the rate while streaming."""
    MTU_TOO_SMALL = 0x05
    """Not one sample fits a notification; the hub must exchange a larger ATT MTU."""
    INTERNAL_ERROR = 0x06


class CalibrationKind(enum.IntEnum):
    """What CALIBRATE zeroes."""

    GYRO_BIAS = 0x01
    """Gyroscope offset, measured while the sensor lies still."""
    ZERO_POSITION = 0x02
    """Bar-velocity sensor: the current position becomes 0."""


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command; ``token`` pairs it with its response (0..255, hub's choice)."""

    opcode: ClassVar[int]
    params: ClassVar[struct.Struct] = struct.Struct("<")

    token: int

    def __post_init__(self) -> None:
        if not 0 <= self.token <= 0xFF:
            raise MalformedFrameError(f"command token {self.token} is outside 0..255")

    def _param_values(self) -> tuple[int, ...]:
        return ()

    def __bytes__(self) -> bytes:
        header = COMMAND_HEADER.pack(PROTOCOL_VERSION, FrameType.COMMAND, self.opcode, self.token)
        return header + self.params.pack(*self._param_values())

    @classmethod
    def _from_params(cls, token: int, values: tuple[int, ...]) -> Self:
        return cls(token, *values)

    def response(self, status: Status = Status.OK, payload: bytes = b"") -> Response:
        """Return the response that answers this command."""
        return Response(opcode=self.opcode, token=self.token, status=status, payload=payload)


_COMMANDS: dict[int, type[Command]] = {}


def _register(cls: type[Command]) -> type[Command]:
    _COMMANDS[cls.opcode] = cls
    return cls


@_register
@dataclass(frozen=True, slots=True)
class StartStreaming(Command):
    """Start notifying data frames at the configured rate."""

    opcode: ClassVar = Opcode.START_STREAMING


@_register
@dataclass(frozen=True, slots=True)
class StopStreaming(Command):
    """Stop notifying data frames."""

    opcode: ClassVar = Opcode.STOP_STREAMING


@_register
@dataclass(frozen=True, slots=True)
class SetConfig(Command):
    """Set the sample rate and ranges; the response carries the configuration now in force.

    A bar-velocity sensor takes ranges of 0 (it has none).
    """

    opcode: ClassVar = Opcode.SET_CONFIG
    params: ClassVar = struct.Struct("<HBH")

    rate_hz: int
    accel_range_g: int = 0
    gyro_range_dps: int = 0

    def _param_values(self) -> tuple[int, ...]:
        return (self.rate_hz, self.accel_range_g, self.gyro_range_dps)

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not 0 <= self.rate_hz <= 0xFFFF:
            raise MalformedFrameError(f"rate {self.rate_hz} Hz does not fit 16 bits")
        if not 0 <= self.accel_range_g <= 0xFF or not 0 <= self.gyro_range_dps <= 0xFFFF:
            raise MalformedFrameError("ranges must fit 8 bits (accel) and 16 bits (gyro)")

    def problem_for(self, kind: SensorKind) -> str | None:
        """Return why a sensor of ``kind`` cannot take this configuration, or None."""
        if kind is SensorKind.IMU:
            checks = [
                (self.rate_hz in IMU_RATES_HZ, f"IMU rate {self.rate_hz} Hz", IMU_RATES_HZ),
                (
                    self.accel_range_g in ACCEL_RANGES_G,
                    f"accelerometer range ±{self.accel_range_g} g",
                    ACCEL_RANGES_G,
                ),
                (
                    self.gyro_range_dps in GYRO_RANGES_DPS,
                    f"gyroscope range ±{self.gyro_range_dps} °/s",
                    GYRO_RANGES_DPS,
                ),
            ]
        else:
            checks = [
                (
                    self.rate_hz in BAR_RATES_HZ,
                    f"bar-velocity rate {self.rate_hz} Hz",
                    BAR_RATES_HZ,
                ),
                (not (self.accel_range_g or self.gyro_range_dps), "ranges other than 0", (0,)),
            ]
        for fits, what, allowed in checks:
            if not fits:
                return f"{what} is not supported; choose one of {allowed}"
        return None


@_register
@dataclass(frozen=True, slots=True)
class GetConfig(Command):
    """Ask for the configuration in force (SensorConfig in the response)."""

    opcode: ClassVar = Opcode.GET_CONFIG


@_register
@dataclass(frozen=True, slots=True)
class Identify(Command):
    """Blink the LED for ``duration_ms`` so a person can tell which sensor this is."""

    opcode: ClassVar = Opcode.IDENTIFY
    params: ClassVar = struct.Struct("<H")

    duration_ms: int = 3000

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not 0 <= self.duration_ms <= 0xFFFF:
            raise MalformedFrameError(f"identify duration {self.duration_ms} ms does not fit")

    def _param_values(self) -> tuple[int, ...]:
        return (self.duration_ms,)


@_register
@dataclass(frozen=True, slots=True)
class Calibrate(Command):
    """Zero a sensor offset (see CalibrationKind); the sensor must lie still."""

    opcode: ClassVar = Opcode.CALIBRATE
    params: ClassVar = struct.Struct("<B")

    kind: int = CalibrationKind.GYRO_BIAS

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not 0 <= self.kind <= 0xFF:
            raise MalformedFrameError(f"calibration kind {self.kind} does not fit 8 bits")

    def _param_values(self) -> tuple[int, ...]:
        return (self.kind,)


@_register
@dataclass(frozen=True, slots=True)
class TimeSync(Command):
    """Read the sensor clock; the response carries it (TimeSyncResult)."""

    opcode: ClassVar = Opcode.TIME_SYNC


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A command whose opcode this version does not know; answered UNKNOWN_COMMAND."""

    opcode: int
    token: int
    params: bytes

    def __bytes__(self) -> bytes:
        header = COMMAND_HEADER.pack(PROTOCOL_VERSION, FrameType.COMMAND, self.opcode, self.token)
        return header + self.params

    def response(self, status: Status = Status.UNKNOWN_COMMAND, payload: bytes = b"") -> Response:
        """Return the response that answers this command."""
        return Response(opcode=self.opcode, token=self.token, status=status, payload=payload)


def decode_command(data: bytes) -> Command | UnknownCommand:
    """Decode a COMMAND frame; raise MalformedFrameError if its bytes do not fit its opcode."""
    if len(data) < COMMAND_HEADER.size:
        raise MalformedFrameError(f"COMMAND frame needs 4 bytes, got {len(data)}")
    _, _, opcode, token = COMMAND_HEADER.unpack_from(data)
    body = data[COMMAND_HEADER.size :]
    cls = _COMMANDS.get(opcode)
    if cls is None:
        return UnknownCommand(opcode=opcode, token=token, params=bytes(body))
    if len(body) != cls.params.size:
        name = Opcode(opcode).name
        raise MalformedFrameError(
            f"{name} takes {cls.params.size} parameter bytes, got {len(body)}"
        )
    return cls._from_params(token, cls.params.unpack(body))


def command_header(data: bytes) -> tuple[int, int]:
    """Return (opcode, token) of whatever command-like bytes arrived, 0 where missing.

    The firmware uses it to address an error response to a command it could not decode.
    """
    padded = bytes(data[:4]).ljust(4, b"\0")
    return padded[2], padded[3]


@dataclass(frozen=True, slots=True)
class Response:
    """The sensor's answer to one command, indicated on the control point."""

    frame_type: ClassVar = FrameType.RESPONSE

    opcode: int
    token: int
    status: Status | int
    payload: bytes = b""

    def __post_init__(self) -> None:
        fields = (("opcode", self.opcode), ("token", self.token), ("status", self.status))
        for name, value in fields:
            if not 0 <= value <= 0xFF:
                raise MalformedFrameError(f"response {name} {value} is outside 0..255")

    @property
    def ok(self) -> bool:
        """Whether the sensor carried the command out."""
        return self.status == Status.OK

    def __bytes__(self) -> bytes:
        header = RESPONSE_HEADER.pack(
            PROTOCOL_VERSION, FrameType.RESPONSE, self.opcode, self.token, self.status
        )
        return header + self.payload

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a RESPONSE frame; raise MalformedFrameError if it is not one."""
        if len(data) < RESPONSE_HEADER.size:
            raise MalformedFrameError(f"RESPONSE frame needs 5 bytes, got {len(data)}")
        _, _, opcode, token, status = RESPONSE_HEADER.unpack_from(data)
        known = status in Status._value2member_map_
        return cls(
            opcode=opcode,
            token=token,
            status=Status(status) if known else status,
            payload=bytes(data[RESPONSE_HEADER.size :]),
        )


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """The configuration in force: payload of SET_CONFIG and GET_CONFIG responses."""

    layout: ClassVar = struct.Struct("<BHBHBB")
    """kind, rate_hz, accel_range_g, gyro_range_dps, samples_per_frame, streaming."""

    kind: SensorKind
    rate_hz: int
    accel_range_g: int
    gyro_range_dps: int
    samples_per_frame: int
    streaming: bool

    def __bytes__(self) -> bytes:
        return self.layout.pack(
            self.kind,
            self.rate_hz,
            self.accel_range_g,
            self.gyro_range_dps,
            self.samples_per_frame,
            self.streaming,
        )

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Decode a configuration payload; raise MalformedFrameError if it is not one."""
        if len(payload) != cls.layout.size:
            raise MalformedFrameError(
                f"configuration payload must be {cls.layout.size} bytes, got {len(payload)}"
            )
        kind, rate, accel, gyro, per_frame, streaming = cls.layout.unpack(payload)
        if kind not in SensorKind._value2member_map_:
            raise MalformedFrameError(f"unknown sensor kind {kind}")
        return cls(SensorKind(kind), rate, accel, gyro, per_frame, bool(streaming))


@dataclass(frozen=True, slots=True)
class TimeSyncResult:
    """Payload of a TIME_SYNC response: the sensor clock when it handled the command."""

    layout: ClassVar = struct.Struct("<I")

    sensor_time_us: int

    def __bytes__(self) -> bytes:
        return self.layout.pack(self.sensor_time_us)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Decode a time-sync payload; raise MalformedFrameError if it is not one."""
        if len(payload) != cls.layout.size:
            raise MalformedFrameError(f"time-sync payload must be 4 bytes, got {len(payload)}")
        return cls(*cls.layout.unpack(payload))
