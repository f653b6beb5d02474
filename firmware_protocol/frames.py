"""Data and status frames: the bytes a sensor notifies, and their decoded values.

Every frame opens with a two-byte preamble, protocol version then frame type
(PROTOCOL.md, "Frames"). Data frames carry a batch of samples; their samples are
exposed as numpy views of the received bytes, so decoding a batch costs no
per-sample Python work and no copy.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self

import numpy as np
import numpy.typing as npt

from firmware_protocol._errors import MalformedFrameError

PROTOCOL_VERSION: Final = 1
STANDARD_GRAVITY: Final = 9.80665
"""m/s² per g, as the accelerometer datasheets define full scale."""

PREAMBLE: Final = struct.Struct("<BB")
"""Version, frame type: the first two bytes of every frame."""


class FrameType(enum.IntEnum):
    """The second byte of every frame (PROTOCOL.md, "Frame types")."""

    IMU_DATA = 0x01
    BAR_DATA = 0x02
    STATUS = 0x10
    COMMAND = 0x20
    RESPONSE = 0x21


class SensorKind(enum.IntEnum):
    """What a sensor measures; advertised, and reported in its configuration."""

    IMU = 1
    BAR_VELOCITY = 2


ACCEL_RANGES_G: Final = (2, 4, 8, 16)
"""Accelerometer full-scale ranges, ±g, indexed by their 4-bit code."""
GYRO_RANGES_DPS: Final = (125, 250, 500, 1000, 2000)
"""Gyroscope full-scale ranges, ±°/s, indexed by their 4-bit code."""
IMU_RATES_HZ: Final = (25, 50, 100, 200, 400, 800)
BAR_RATES_HZ: Final = (50, 100, 200, 500, 1000)
FULL_SCALE_COUNTS: Final = 32768
"""int16 counts that correspond to the full-scale range."""


def accel_scale(range_g: int) -> float:
    """Return m/s² per count for an accelerometer range in ±g."""
    return range_g * STANDARD_GRAVITY / FULL_SCALE_COUNTS


def gyro_scale(range_dps: int) -> float:
    """Return rad/s per count for a gyroscope range in ±°/s."""
    return math.radians(range_dps) / FULL_SCALE_COUNTS


def _scaled(counts: npt.NDArray[np.signedinteger], scale: float) -> npt.NDArray[np.float64]:
    out = counts.astype(np.float64)
    out *= scale
    return out


def _range_code(value: int, table: tuple[int, ...], what: str) -> int:
    try:
        return table.index(value)
    except ValueError:
        raise MalformedFrameError(f"{what} {value} is not one of {table}") from None


def _check_field(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise MalformedFrameError(f"{name} {value} is outside {low}..{high}")


# Data frames --------------------------------------------------------------------------

DATA_HEADER: Final = struct.Struct("<BBHIHBB")
"""version, type, seq, timestamp_us, interval_us, count, ranges: 12 bytes."""


@dataclass(frozen=True, slots=True, eq=False)
class _DataFrame:
    """Fields shared by the data frames: a batch of equally spaced samples."""

    sample_dtype: ClassVar[np.dtype[np.signedinteger]]
    columns: ClassVar[int]
    frame_type: ClassVar[FrameType]

    seq: int
    """Frame sequence number, 0..65535, +1 per data frame, wrapping."""
    timestamp_us: int
    """Sensor clock at the first sample, µs, a wrapping 32-bit counter."""
    interval_us: int
    """Sample period by the sensor clock, µs."""
    samples: npt.NDArray[np.signedinteger] = field(repr=False)
    """Raw samples, shape (count, columns); read-only when decoded."""

    def __post_init__(self) -> None:
        _check_field("seq", self.seq, 0, 0xFFFF)
        _check_field("timestamp_us", self.timestamp_us, 0, 0xFFFFFFFF)
        _check_field("interval_us", self.interval_us, 1, 0xFFFF)
        shape = self.samples.shape
        if len(shape) != 2 or shape[1] != self.columns or not 1 <= shape[0] <= 255:
            raise MalformedFrameError(
                f"samples must have shape (1..255, {self.columns}), not {shape}"
            )
        if self.samples.dtype != self.sample_dtype:
            _check_counts(self.samples, self.sample_dtype)

    @property
    def count(self) -> int:
        """Samples in the batch."""
        return int(self.samples.shape[0])

    @property
    def sample_offsets_us(self) -> npt.NDArray[np.int64]:
        """Each sample's offset from ``timestamp_us`` by the sensor clock, µs, shape (count,)."""
        return np.arange(self.count, dtype=np.int64) * self.interval_us

    def _ranges_byte(self) -> int:
        return 0

    def __bytes__(self) -> bytes:
        header = DATA_HEADER.pack(
            PROTOCOL_VERSION,
            self.frame_type,
            self.seq,
            self.timestamp_us,
            self.interval_us,
            self.count,
            self._ranges_byte(),
        )
        return header + np.ascontiguousarray(self.samples, dtype=self.sample_dtype).tobytes()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and bytes(self) == bytes(other)

    def __hash__(self) -> int:
        return hash(bytes(self))

    @classmethod
    def _decode_samples(cls, data: bytes, count: int) -> npt.NDArray[np.signedinteger]:
        expected = DATA_HEADER.size + count * cls.sample_dtype.itemsize * cls.columns
        if count == 0:
            raise MalformedFrameError(f"{cls.frame_type.name} frame with no samples")
        if len(data) != expected:
            raise MalformedFrameError(
                f"{cls.frame_type.name} frame of {count} samples must be {expected} bytes, "
                f"got {len(data)}"
            )
        flat = np.frombuffer(data, dtype=cls.sample_dtype, offset=DATA_HEADER.size)
        return flat.reshape(count, cls.columns)


@dataclass(frozen=True, slots=True, eq=False)
class ImuDataFrame(_DataFrame):
    """A batch of accelerometer + gyroscope samples (PROTOCOL.md, "IMU_DATA").

    ``samples`` holds int16 counts, columns ``ax ay az gx gy gz`` in the sensor frame.
    """

    sample_dtype: ClassVar = np.dtype("<i2")
    columns: ClassVar = 6
    frame_type: ClassVar = FrameType.IMU_DATA

    accel_range_g: int = 16
    gyro_range_dps: int = 2000

    def __post_init__(self) -> None:
        _DataFrame.__post_init__(self)
        _range_code(self.accel_range_g, ACCEL_RANGES_G, "accelerometer range")
        _range_code(self.gyro_range_dps, GYRO_RANGES_DPS, "gyroscope range")

    @property
    def accel(self) -> npt.NDArray[np.float64]:
        """Specific force in the sensor frame, m/s², shape (count, 3)."""
        return _scaled(self.samples[:, 0:3], accel_scale(self.accel_range_g))

    @property
    def gyro(self) -> npt.NDArray[np.float64]:
        """Angular velocity in the sensor frame, rad/s, shape (count, 3)."""
        return _scaled(self.samples[:, 3:6], gyro_scale(self.gyro_range_dps))

    def _ranges_byte(self) -> int:
        accel_code = ACCEL_RANGES_G.index(self.accel_range_g)
        gyro_code = GYRO_RANGES_DPS.index(self.gyro_range_dps)
        return accel_code | gyro_code << 4

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode an IMU_DATA frame; raise MalformedFrameError if it is not one."""
        _, _, seq, timestamp_us, interval_us, count, ranges = _unpack_data_header(data)
        accel_code, gyro_code = ranges & 0x0F, ranges >> 4
        if accel_code >= len(ACCEL_RANGES_G) or gyro_code >= len(GYRO_RANGES_DPS):
            raise MalformedFrameError(f"IMU_DATA range byte 0x{ranges:02x} has an unknown code")
        return cls(
            seq=seq,
            timestamp_us=timestamp_us,
            interval_us=interval_us,
            samples=cls._decode_samples(data, count),
            accel_range_g=ACCEL_RANGES_G[accel_code],
            gyro_range_dps=GYRO_RANGES_DPS[gyro_code],
        )

    @classmethod
    def from_si(
        cls,
        *,
        seq: int,
        timestamp_us: int,
        interval_us: int,
        accel: npt.ArrayLike,
        gyro: npt.ArrayLike,
        accel_range_g: int = 16,
        gyro_range_dps: int = 2000,
    ) -> Self:
        """Build a frame from m/s² and rad/s, quantised and clipped as the sensor would."""
        counts = np.hstack(
            [
                np.asarray(accel, dtype=np.float64) / accel_scale(accel_range_g),
                np.asarray(gyro, dtype=np.float64) / gyro_scale(gyro_range_dps),
            ]
        )
        samples = np.clip(np.rint(counts), -FULL_SCALE_COUNTS, FULL_SCALE_COUNTS - 1)
        return cls(
            seq=seq,
            timestamp_us=timestamp_us,
            interval_us=interval_us,
            samples=samples.astype("<i2"),
            accel_range_g=accel_range_g,
            gyro_range_dps=gyro_range_dps,
        )


@dataclass(frozen=True, slots=True, eq=False)
class BarDataFrame(_DataFrame):
    """A batch of bar position + velocity samples (PROTOCOL.md, "BAR_DATA").

    ``samples`` holds int32 columns ``position_um velocity_um_s``: vertical bar
    position relative to the zero point, µm, and vertical velocity, µm/s (up positive).
    """

    sample_dtype: ClassVar = np.dtype("<i4")
    columns: ClassVar = 2
    frame_type: ClassVar = FrameType.BAR_DATA

    @property
    def position(self) -> npt.NDArray[np.float64]:
        """Vertical bar position, m, shape (count,)."""
        return _scaled(self.samples[:, 0], 1e-6)

    @property
    def velocity(self) -> npt.NDArray[np.float64]:
        """Vertical bar velocity, m/s, shape (count,)."""
        return _scaled(self.samples[:, 1], 1e-6)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a BAR_DATA frame; raise MalformedFrameError if it is not one."""
        _, _, seq, timestamp_us, interval_us, count, ranges = _unpack_data_header(data)
        if ranges != 0:
            raise MalformedFrameError(f"BAR_DATA range byte must be 0, got 0x{ranges:02x}")
        return cls(
            seq=seq,
            timestamp_us=timestamp_us,
            interval_us=interval_us,
            samples=cls._decode_samples(data, count),
        )

    @classmethod
    def from_si(
        cls,
        *,
        seq: int,
        timestamp_us: int,
        interval_us: int,
        position: npt.ArrayLike,
        velocity: npt.ArrayLike,
    ) -> Self:
        """Build a frame from metres and m/s, rounded to µm and µm/s."""
        columns = np.column_stack(
            [np.asarray(position, dtype=np.float64), np.asarray(velocity, dtype=np.float64)]
        )
        limit = np.iinfo(np.int32)
        samples = np.clip(np.rint(columns * 1e6), limit.min, limit.max).astype("<i4")
        return cls(seq=seq, timestamp_us=timestamp_us, interval_us=interval_us, samples=samples)


def _check_counts(samples: npt.NDArray[np.generic], dtype: np.dtype[np.signedinteger]) -> None:
    # Encoding casts to the wire dtype, which would silently wrap counts that do not fit.
    if samples.dtype.kind not in "iu":
        raise MalformedFrameError(f"samples must be integer counts, not {samples.dtype}")
    limits = np.iinfo(dtype)
    low, high = int(samples.min()), int(samples.max())
    if low < limits.min or high > limits.max:
        raise MalformedFrameError(
            f"samples {low}..{high} do not fit {dtype.name} ({limits.min}..{limits.max}); "
            "clip them, or build the frame with from_si"
        )


def _unpack_data_header(data: bytes) -> tuple[int, ...]:
    if len(data) < DATA_HEADER.size:
        raise MalformedFrameError(
            f"data frame needs a {DATA_HEADER.size}-byte header, got {len(data)} bytes"
        )
    return DATA_HEADER.unpack_from(data)


def samples_per_frame(kind: SensorKind, att_mtu: int) -> int:
    """Return how many samples of a sensor kind fit one notification at an ATT MTU (0: none)."""
    sample_size = (
        ImuDataFrame.columns * ImuDataFrame.sample_dtype.itemsize
        if SensorKind(kind) is SensorKind.IMU
        else BarDataFrame.columns * BarDataFrame.sample_dtype.itemsize
    )
    return max(0, min(255, (att_mtu - 3 - DATA_HEADER.size) // sample_size))


# Status frame -------------------------------------------------------------------------


class StatusFlags(enum.IntFlag):
    """Bits of a status frame's ``flags`` (PROTOCOL.md, "STATUS")."""

    STREAMING = 0x0001
    CHARGING = 0x0002
    LOW_BATTERY = 0x0004
    CALIBRATED = 0x0008
    IDENTIFYING = 0x0010
    CLIPPING = 0x0020
    """A sample reached the configured range since the last status."""
    BUFFER_OVERFLOW = 0x0040
    """The sensor discarded data frames because the link could not carry them."""
    PAIRING_MODE = 0x0080


STATUS_BODY: Final = struct.Struct("<BBBhH")
"""version, type, battery %, temperature (0.01 °C), flags: 7 bytes."""
BATTERY_UNKNOWN: Final = 0xFF


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """Battery, temperature and state flags; read or notified on the status characteristic."""

    frame_type: ClassVar = FrameType.STATUS

    battery_pct: int
    """0..100, or BATTERY_UNKNOWN (255)."""
    temperature_c: float
    flags: StatusFlags

    def __post_init__(self) -> None:
        if not (0 <= self.battery_pct <= 100 or self.battery_pct == BATTERY_UNKNOWN):
            raise MalformedFrameError(f"battery {self.battery_pct} % is outside 0..100")
        if not -327.68 <= self.temperature_c <= 327.67:
            raise MalformedFrameError(f"temperature {self.temperature_c} °C is out of range")

    def __bytes__(self) -> bytes:
        return STATUS_BODY.pack(
            PROTOCOL_VERSION,
            self.frame_type,
            self.battery_pct,
            round(self.temperature_c * 100),
            self.flags,
        )

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a STATUS frame; raise MalformedFrameError if it is not one."""
        if len(data) != STATUS_BODY.size:
            raise MalformedFrameError(
                f"STATUS frame must be {STATUS_BODY.size} bytes, got {len(data)}"
            )
        _, _, battery, centi_c, flags = STATUS_BODY.unpack(data)
        return cls(
            battery_pct=battery,
            temperature_c=centi_c / 100,
            flags=StatusFlags(flags),
        )


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame of a type this version does not know, kept whole instead of failing."""

    version: int
    frame_type: int
    payload: bytes

    def __bytes__(self) -> bytes:
        return PREAMBLE.pack(self.version, self.frame_type) + self.payload
