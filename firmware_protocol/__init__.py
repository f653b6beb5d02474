"""The wire contract between sensorhub sensors and the hub: pure, synchronous, no I/O.

``decode(bytes) -> Frame`` and ``bytes(frame)`` are the whole codec; PROTOCOL.md beside
this file is the human-readable specification with byte tables. The reference
firmware (virtual sensors over a Bumble radio) lives in ``firmware_protocol.virtual``.
"""

from firmware_protocol._codec import Frame, decode
from firmware_protocol._errors import (
    FirmwareProtocolError,
    MalformedFrameError,
    ScenarioError,
    UnsupportedVersionError,
)
from firmware_protocol.advertising import COMPANY_ID, AdvertisingFlags, SensorAdvertisement
from firmware_protocol.control import (
    Calibrate,
    CalibrationKind,
    Command,
    GetConfig,
    Identify,
    Opcode,
    Response,
    SensorConfig,
    SetConfig,
    StartStreaming,
    Status,
    StopStreaming,
    TimeSync,
    TimeSyncResult,
    UnknownCommand,
)
from firmware_protocol.frames import (
    ACCEL_RANGES_G,
    BAR_RATES_HZ,
    GYRO_RANGES_DPS,
    IMU_RATES_HZ,
    PROTOCOL_VERSION,
    BarDataFrame,
    FrameType,
    ImuDataFrame,
    SensorKind,
    StatusFlags,
    StatusFrame,
    UnknownFrame,
    samples_per_frame,
)

__all__ = [
    "ACCEL_RANGES_G",
    "BAR_RATES_HZ",
    "COMPANY_ID",
    "GYRO_RANGES_DPS",
    "IMU_RATES_HZ",
    "PROTOCOL_VERSION",
    "AdvertisingFlags",
    "BarDataFrame",
    "Calibrate",
    "CalibrationKind",
    "Command",
    "FirmwareProtocolError",
    "Frame",
    "FrameType",
    "GetConfig",
    "Identify",
    "ImuDataFrame",
    "MalformedFrameError",
    "Opcode",
    "Response",
    "ScenarioError",
    "SensorAdvertisement",
    "SensorConfig",
    "SensorKind",
    "SetConfig",
    "StartStreaming",
    "Status",
    "StatusFlags",
    "StatusFrame",
    "StopStreaming",
    "TimeSync",
    "TimeSyncResult",
    "UnknownCommand",
    "UnknownFrame",
    "UnsupportedVersionError",
    "decode",
    "samples_per_frame",
]
