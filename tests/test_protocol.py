"""The wire codec against the byte tables of PROTOCOL.md, and against arbitrary bytes.

Golden vectors are written out by hand from the tables in firmware_protocol/PROTOCOL.md;
they are never produced by the encoder under test.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol import (
    ACCEL_RANGES_G,
    BAR_RATES_HZ,
    COMPANY_ID,
    GYRO_RANGES_DPS,
    IMU_RATES_HZ,
    PROTOCOL_VERSION,
    AdvertisingFlags,
    BarDataFrame,
    Calibrate,
    CalibrationKind,
    Command,
    FirmwareProtocolError,
    FrameType,
    GetConfig,
    Identify,
    ImuDataFrame,
    MalformedFrameError,
    Opcode,
    Response,
    SensorAdvertisement,
    SensorConfig,
    SensorKind,
    SetConfig,
    StartStreaming,
    Status,
    StatusFlags,
    StatusFrame,
    StopStreaming,
    TimeSync,
    TimeSyncResult,
    UnknownCommand,
    UnknownFrame,
    UnsupportedVersionError,
    decode,
    gatt,
    samples_per_frame,
)
from firmware_protocol.control import command_header

G = 9.80665
FUZZ = settings(max_examples=2000, deadline=None)


def h(text: str) -> bytes:
    """Bytes from hex written with spaces, as in the spec's examples."""
    return bytes.fromhex(text)


# The worked example of PROTOCOL.md, "An IMU_DATA frame".
IMU_GOLDEN = h(
    "01 01 34 12 40 e2 01 00 88 13 02 21"
    " 00 00 00 00 00 20 64 00 9c ff 00 00"
    " ff ff 01 00 00 20 ff 7f 00 80 00 01"
)
IMU_SAMPLES = np.array(
    [[0, 0, 8192, 100, -100, 0], [-1, 1, 8192, 32767, -32768, 256]], dtype=np.int16
)
IMU_FRAME = ImuDataFrame(
    seq=0x1234,
    timestamp_us=123456,
    interval_us=5000,
    samples=IMU_SAMPLES,
    accel_range_g=4,
    gyro_range_dps=500,
)

# seq and timestamp at their maxima; 1 m up, 0.5 m/s down.
BAR_GOLDEN = h("01 02 ff ff ff ff ff ff e8 03 01 00  40 42 0f 00 e0 5e f8 ff")
BAR_FRAME = BarDataFrame(
    seq=0xFFFF,
    timestamp_us=0xFFFFFFFF,
    interval_us=1000,
    samples=np.array([[1_000_000, -500_000]], dtype=np.int32),
)


# Golden vectors ---------------------------------------------------------------------


def test_imu_data_golden_encodes() -> None:
    assert bytes(IMU_FRAME) == IMU_GOLDEN


def test_imu_data_golden_decodes_field_by_field() -> None:
    frame = decode(IMU_GOLDEN)
    assert isinstance(frame, ImuDataFrame)
    assert frame.seq == 0x1234
    assert frame.timestamp_us == 123456
    assert frame.interval_us == 5000
    assert frame.count == 2
    assert frame.accel_range_g == 4
    assert frame.gyro_range_dps == 500
    np.testing.assert_array_equal(frame.samples, IMU_SAMPLES)
    np.testing.assert_array_equal(frame.sample_offsets_us, [0, 5000])
    assert frame == IMU_FRAME


def test_bar_data_golden_both_ways() -> None:
    assert bytes(BAR_FRAME) == BAR_GOLDEN
    frame = decode(BAR_GOLDEN)
    assert isinstance(frame, BarDataFrame)
    assert (frame.seq, frame.timestamp_us, frame.interval_us, frame.count) == (
        0xFFFF,
        0xFFFFFFFF,
        1000,
        1,
    )
    np.testing.assert_array_equal(frame.samples, [[1_000_000, -500_000]])
    np.testing.assert_allclose(frame.position, [1.0])
    np.testing.assert_allclose(frame.velocity, [-0.5])
    assert frame == BAR_FRAME


@pytest.mark.parametrize(
    ("golden", "frame"),
    [
        pytest.param(
            h("01 10 57 29 09 09 00"),
            StatusFrame(87, 23.45, StatusFlags.STREAMING | StatusFlags.CALIBRATED),
            id="warm-streaming",
        ),
        pytest.param(
            h("01 10 ff 1e fb a0 00"),
            StatusFrame(255, -12.5, StatusFlags.CLIPPING | StatusFlags.PAIRING_MODE),
            id="cold-battery-unknown",
        ),
        pytest.param(
            h("01 10 00 00 80 ff 00"),
            StatusFrame(0, -327.68, StatusFlags(0xFF)),
            id="all-flags-coldest",
        ),
        pytest.param(
            h("01 10 64 ff 7f 00 00"),
            StatusFrame(100, 327.67, StatusFlags(0)),
            id="no-flags-hottest",
        ),
    ],
)
def test_status_golden_both_ways(golden: bytes, frame: StatusFrame) -> None:
    assert bytes(frame) == golden
    assert decode(golden) == frame


def test_status_flag_bits_match_the_spec() -> None:
    bits = {flag.name: flag.value for flag in StatusFlags}
    assert bits == {
        "STREAMING": 0x01,
        "CHARGING": 0x02,
        "LOW_BATTERY": 0x04,
        "CALIBRATED": 0x08,
        "IDENTIFYING": 0x10,
        "CLIPPING": 0x20,
        "BUFFER_OVERFLOW": 0x40,
        "PAIRING_MODE": 0x80,
    }


def test_status_reserved_flag_bits_are_kept() -> None:
    frame = decode(h("01 10 32 00 00 01 81"))
    assert isinstance(frame, StatusFrame)
    assert int(frame.flags) == 0x8101
    assert StatusFlags.STREAMING in frame.flags
    assert bytes(frame) == h("01 10 32 00 00 01 81")


COMMAND_GOLDENS = [
    pytest.param(h("01 20 01 01"), StartStreaming(token=1), id="START_STREAMING"),
    pytest.param(h("01 20 02 02"), StopStreaming(token=2), id="STOP_STREAMING"),
    pytest.param(
        h("01 20 03 2a c8 00 04 f4 01"),
        SetConfig(token=0x2A, rate_hz=200, accel_range_g=4, gyro_range_dps=500),
        id="SET_CONFIG-imu",
    ),
    pytest.param(
        h("01 20 03 03 e8 03 00 00 00"), SetConfig(token=3, rate_hz=1000), id="SET_CONFIG-bar"
    ),
    pytest.param(h("01 20 04 ff"), GetConfig(token=0xFF), id="GET_CONFIG"),
    pytest.param(h("01 20 05 07 b8 0b"), Identify(token=7), id="IDENTIFY-default-3000ms"),
    pytest.param(h("01 20 05 00 ff ff"), Identify(token=0, duration_ms=65535), id="IDENTIFY"),
    pytest.param(
        h("01 20 06 08 01"),
        Calibrate(token=8, kind=CalibrationKind.GYRO_BIAS),
        id="CALIBRATE-gyro",
    ),
    pytest.param(
        h("01 20 06 08 02"),
        Calibrate(token=8, kind=CalibrationKind.ZERO_POSITION),
        id="CALIBRATE-zero",
    ),
    pytest.param(h("01 20 07 09"), TimeSync(token=9), id="TIME_SYNC"),
    pytest.param(
        h("01 20 7f 10 aa bb"),
        UnknownCommand(opcode=0x7F, token=0x10, params=b"\xaa\xbb"),
        id="unknown-opcode",
    ),
]


@pytest.mark.parametrize(("golden", "command"), COMMAND_GOLDENS)
def test_command_golden_both_ways(golden: bytes, command: Command | UnknownCommand) -> None:
    assert bytes(command) == golden
    decoded = decode(golden)
    assert type(decoded) is type(command)
    assert decoded == command


def test_every_opcode_has_a_golden_vector() -> None:
    vectors = [param.values[1] for param in COMMAND_GOLDENS]
    covered = {command.opcode for command in vectors if isinstance(command, Command)}
    assert covered == set(Opcode)


def test_opcode_and_status_codes_match_the_spec() -> None:
    assert {op.name: op.value for op in Opcode} == {
        "START_STREAMING": 1,
        "STOP_STREAMING": 2,
        "SET_CONFIG": 3,
        "GET_CONFIG": 4,
        "IDENTIFY": 5,
        "CALIBRATE": 6,
        "TIME_SYNC": 7,
    }
    assert {status.name: status.value for status in Status} == {
        "OK": 0,
        "UNKNOWN_COMMAND": 1,
        "MALFORMED": 2,
        "INVALID_PARAMETER": 3,
        "INVALID_STATE": 4,
        "MTU_TOO_SMALL": 5,
        "INTERNAL_ERROR": 6,
    }
    assert {kind.name: kind.value for kind in FrameType} == {
        "IMU_DATA": 0x01,
        "BAR_DATA": 0x02,
        "STATUS": 0x10,
        "COMMAND": 0x20,
        "RESPONSE": 0x21,
    }


IMU_CONFIG = SensorConfig(
    kind=SensorKind.IMU,
    rate_hz=200,
    accel_range_g=4,
    gyro_range_dps=500,
    samples_per_frame=19,
    streaming=False,
)
BAR_CONFIG = SensorConfig(
    kind=SensorKind.BAR_VELOCITY,
    rate_hz=1000,
    accel_range_g=0,
    gyro_range_dps=0,
    samples_per_frame=29,
    streaming=True,
)


@pytest.mark.parametrize(
    ("golden", "config"),
    [
        pytest.param(h("01 c8 00 04 f4 01 13 00"), IMU_CONFIG, id="imu"),
        pytest.param(h("02 e8 03 00 00 00 1d 01"), BAR_CONFIG, id="bar-streaming"),
    ],
)
def test_sensor_config_golden_both_ways(golden: bytes, config: SensorConfig) -> None:
    assert bytes(config) == golden
    assert SensorConfig.decode(golden) == config


def test_time_sync_result_golden_both_ways() -> None:
    assert bytes(TimeSyncResult(0xDEADBEEF)) == h("ef be ad de")
    assert TimeSyncResult.decode(h("ef be ad de")) == TimeSyncResult(0xDEADBEEF)
    assert TimeSyncResult.decode(h("00 00 00 00")).sensor_time_us == 0


@pytest.mark.parametrize(
    ("golden", "response"),
    [
        pytest.param(
            h("01 21 03 2a 00 01 c8 00 04 f4 01 13 00"),
            Response(Opcode.SET_CONFIG, 0x2A, Status.OK, bytes(IMU_CONFIG)),
            id="SET_CONFIG-ok",
        ),
        pytest.param(
            h("01 21 04 05 00 02 e8 03 00 00 00 1d 01"),
            Response(Opcode.GET_CONFIG, 5, Status.OK, bytes(BAR_CONFIG)),
            id="GET_CONFIG-ok",
        ),
        pytest.param(
            h("01 21 07 63 00 ef be ad de"),
            Response(Opcode.TIME_SYNC, 0x63, Status.OK, bytes(TimeSyncResult(0xDEADBEEF))),
            id="TIME_SYNC-ok",
        ),
        pytest.param(
            h("01 21 01 00 05"),
            Response(Opcode.START_STREAMING, 0, Status.MTU_TOO_SMALL),
            id="START_STREAMING-mtu-too-small",
        ),
        pytest.param(
            h("01 21 03 2b 02"), Response(3, 0x2B, Status.MALFORMED), id="SET_CONFIG-malformed"
        ),
        pytest.param(
            h("01 21 03 2a 04"), Response(3, 0x2A, Status.INVALID_STATE), id="invalid-state"
        ),
        pytest.param(
            h("01 21 06 01 03"), Response(6, 1, Status.INVALID_PARAMETER), id="invalid-param"
        ),
        pytest.param(
            h("01 21 7f 10 01"), Response(0x7F, 0x10, Status.UNKNOWN_COMMAND), id="unknown"
        ),
        pytest.param(h("01 21 02 11 06"), Response(2, 0x11, Status.INTERNAL_ERROR), id="internal"),
    ],
)
def test_response_golden_both_ways(golden: bytes, response: Response) -> None:
    assert bytes(response) == golden
    assert decode(golden) == response


def test_response_payloads_decode_from_the_golden_response() -> None:
    response = decode(h("01 21 04 05 00 02 e8 03 00 00 00 1d 01"))
    assert isinstance(response, Response)
    assert response.ok
    assert SensorConfig.decode(response.payload) == BAR_CONFIG
    sync = decode(h("01 21 07 63 00 ef be ad de"))
    assert isinstance(sync, Response)
    assert TimeSyncResult.decode(sync.payload).sensor_time_us == 0xDEADBEEF


def test_command_response_echoes_opcode_and_token() -> None:
    command = decode(h("01 20 03 2a c8 00 04 f4 01"))
    assert isinstance(command, SetConfig)
    assert bytes(command.response(Status.INVALID_STATE)) == h("01 21 03 2a 04")
    assert bytes(command.response(payload=bytes(IMU_CONFIG))) == h(
        "01 21 03 2a 00 01 c8 00 04 f4 01 13 00"
    )


def test_unknown_command_is_answered_unknown_command() -> None:
    command = decode(h("01 20 99 42 01 02 03"))
    assert command == UnknownCommand(opcode=0x99, token=0x42, params=h("01 02 03"))
    assert isinstance(command, UnknownCommand)
    assert bytes(command.response()) == h("01 21 99 42 01")


def test_unknown_response_status_is_kept_as_int() -> None:
    response = decode(h("01 21 03 2a 80 aa"))
    assert isinstance(response, Response)
    assert response.status == 0x80
    assert not isinstance(response.status, Status)
    assert not response.ok
    assert response.payload == b"\xaa"
    assert bytes(response) == h("01 21 03 2a 80 aa")


def test_advertisement_golden_both_ways() -> None:
    advert = SensorAdvertisement(
        kind=SensorKind.IMU,
        battery_pct=85,
        flags=AdvertisingFlags.PAIRING_MODE | AdvertisingFlags.LOW_BATTERY,
    )
    golden = h("53 48 01 01 55 05")
    assert bytes(advert) == golden
    assert SensorAdvertisement.decode(golden) == advert
    found = SensorAdvertisement.from_manufacturer_data({0x004C: b"\x02\x15", 0xFFFF: golden})
    assert found == advert
    assert found is not None
    assert found.pairing_mode


def test_advertisement_bar_sensor_streaming_battery_unknown() -> None:
    golden = h("53 48 01 02 ff 02")
    advert = SensorAdvertisement.decode(golden)
    assert advert == SensorAdvertisement(
        SensorKind.BAR_VELOCITY, 255, AdvertisingFlags.STREAMING, version=1
    )
    assert not advert.pairing_mode
    assert bytes(advert) == golden


def test_advertisement_company_id_and_ad_structure() -> None:
    assert COMPANY_ID == 0xFFFF
    advert = SensorAdvertisement(SensorKind.IMU, 50, AdvertisingFlags(0))
    payload = struct.pack("<H", COMPANY_ID) + bytes(advert)
    ad_structure = bytes([len(payload) + 1, 0xFF]) + payload
    assert ad_structure == h("09 ff ff ff 53 48 01 01 32 00")


def test_advertisement_not_ours_is_none() -> None:
    assert SensorAdvertisement.from_manufacturer_data({}) is None
    assert SensorAdvertisement.from_manufacturer_data({0x0059: h("53 48 01 01 55 05")}) is None
    assert SensorAdvertisement.from_manufacturer_data({0xFFFF: h("41 42 01 01 55 05")}) is None


def test_advertisement_trailing_bytes_are_ignored() -> None:
    advert = SensorAdvertisement.decode(h("53 48 01 01 32 00 de ad"))
    assert bytes(advert) == h("53 48 01 01 32 00")


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        pytest.param(h("53 48 01 01 55"), MalformedFrameError, "needs 6 bytes", id="short"),
        pytest.param(h("53 48 02 01 55 00"), UnsupportedVersionError, "version 2", id="v2"),
        pytest.param(h("53 48 01 03 55 00"), MalformedFrameError, "kind 3", id="kind"),
        pytest.param(h("53 48 01 01 65 00"), MalformedFrameError, "101", id="battery"),
    ],
)
def test_advertisement_ours_but_malformed_raises(
    payload: bytes, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        SensorAdvertisement.from_manufacturer_data({COMPANY_ID: payload})


def test_unknown_frame_type_is_kept_whole() -> None:
    frame = decode(h("01 7e de ad be ef"))
    assert frame == UnknownFrame(version=1, frame_type=0x7E, payload=h("de ad be ef"))
    assert bytes(frame) == h("01 7e de ad be ef")
    assert decode(h("01 00")) == UnknownFrame(1, 0, b"")


def test_gatt_uuids_match_the_spec() -> None:
    assert gatt.SERVICE_UUID == "f3a10001-6c1e-4b7a-9d52-5e8c2a7b4d90"
    assert gatt.DATA_CHAR_UUID == "f3a10002-6c1e-4b7a-9d52-5e8c2a7b4d90"
    assert gatt.STATUS_CHAR_UUID == "f3a10003-6c1e-4b7a-9d52-5e8c2a7b4d90"
    assert gatt.CONTROL_POINT_UUID == "f3a10004-6c1e-4b7a-9d52-5e8c2a7b4d90"
    assert gatt.DEVICE_INFORMATION_SERVICE_UUID.startswith("0000180a-")
    assert gatt.BATTERY_SERVICE_UUID.startswith("0000180f-")


# Round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 0x7FFF, 0xFFFF])
@pytest.mark.parametrize("timestamp_us", [0, 1, 2**31, 2**32 - 1])
def test_imu_header_edges_round_trip(seq: int, timestamp_us: int) -> None:
    frame = ImuDataFrame(seq=seq, timestamp_us=timestamp_us, interval_us=1250, samples=IMU_SAMPLES)
    data = bytes(frame)
    assert data[2:4] == seq.to_bytes(2, "little")
    assert data[4:8] == timestamp_us.to_bytes(4, "little")
    decoded = decode(data)
    assert isinstance(decoded, ImuDataFrame)
    assert (decoded.seq, decoded.timestamp_us) == (seq, timestamp_us)
    assert bytes(decoded) == data


@pytest.mark.parametrize("accel_code", range(len(ACCEL_RANGES_G)))
@pytest.mark.parametrize("gyro_code", range(len(GYRO_RANGES_DPS)))
def test_every_range_code_round_trips(accel_code: int, gyro_code: int) -> None:
    frame = ImuDataFrame(
        seq=7,
        timestamp_us=0,
        interval_us=10_000,
        samples=IMU_SAMPLES,
        accel_range_g=ACCEL_RANGES_G[accel_code],
        gyro_range_dps=GYRO_RANGES_DPS[gyro_code],
    )
    data = bytes(frame)
    assert data[11] == accel_code | gyro_code << 4
    decoded = decode(data)
    assert isinstance(decoded, ImuDataFrame)
    assert decoded.accel_range_g == ACCEL_RANGES_G[accel_code]
    assert decoded.gyro_range_dps == GYRO_RANGES_DPS[gyro_code]


def test_range_tables_match_the_spec() -> None:
    assert ACCEL_RANGES_G == (2, 4, 8, 16)
    assert GYRO_RANGES_DPS == (125, 250, 500, 1000, 2000)
    assert IMU_RATES_HZ == (25, 50, 100, 200, 400, 800)
    assert BAR_RATES_HZ == (50, 100, 200, 500, 1000)
    # The spec promises a whole number of µs per sample at every rate.
    assert all(1_000_000 % rate == 0 for rate in IMU_RATES_HZ + BAR_RATES_HZ)


@pytest.mark.parametrize("count", [1, 2, 41, 255])
def test_imu_sample_counts_round_trip(count: int) -> None:
    rng = np.random.default_rng(count)
    samples = rng.integers(-32768, 32768, size=(count, 6), dtype=np.int16)
    samples[0] = [-32768, 32767, -1, 0, 1, -32768]
    frame = ImuDataFrame(seq=0, timestamp_us=0, interval_us=2500, samples=samples)
    data = bytes(frame)
    assert len(data) == 12 + 12 * count
    assert data[10] == count
    decoded = decode(data)
    assert isinstance(decoded, ImuDataFrame)
    np.testing.assert_array_equal(decoded.samples, samples)
    assert decoded == frame


@pytest.mark.parametrize("count", [1, 62, 255])
def test_bar_sample_counts_round_trip(count: int) -> None:
    rng = np.random.default_rng(count)
    samples = rng.integers(-(2**31), 2**31, size=(count, 2), dtype=np.int32)
    samples[0] = [-(2**31), 2**31 - 1]
    frame = BarDataFrame(seq=65535, timestamp_us=2**32 - 1, interval_us=65535, samples=samples)
    data = bytes(frame)
    assert len(data) == 12 + 8 * count
    decoded = decode(data)
    assert isinstance(decoded, BarDataFrame)
    np.testing.assert_array_equal(decoded.samples, samples)
    assert bytes(decoded) == data


def test_negative_counts_are_twos_complement_little_endian() -> None:
    samples = np.array([[-1, -2, -256, -32768, 0, 0]], dtype=np.int16)
    frame = ImuDataFrame(seq=0, timestamp_us=0, interval_us=1, samples=samples)
    assert bytes(frame)[12:] == h("ff ff fe ff 00 ff 00 80 00 00 00 00")
    bar = BarDataFrame(
        seq=0, timestamp_us=0, interval_us=1, samples=np.array([[-1, -(2**31)]], np.int32)
    )
    assert bytes(bar)[12:] == h("ff ff ff ff 00 00 00 80")


@pytest.mark.parametrize("centi_c", [-32768, -1, 0, 1, 2345, 32767])
def test_status_temperature_round_trips(centi_c: int) -> None:
    data = h("01 10 64") + struct.pack("<h", centi_c) + h("00 00")
    frame = decode(data)
    assert isinstance(frame, StatusFrame)
    assert frame.temperature_c == pytest.approx(centi_c / 100)
    assert bytes(frame) == data


def test_every_status_temperature_survives_a_round_trip() -> None:
    # temperature_c is a float on our side; every int16 must come back unchanged.
    for centi_c in range(-32768, 32768):
        data = h("01 10 64") + struct.pack("<h", centi_c) + h("00 00")
        assert bytes(decode(data)) == data, centi_c


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", list(SensorKind))
def test_sensor_config_round_trips(kind: SensorKind, streaming: bool) -> None:
    config = SensorConfig(kind, 65535, 255, 65535, 255, streaming)
    decoded = SensorConfig.decode(bytes(config))
    assert decoded == config
    assert decoded.streaming is streaming


def test_sensor_config_reads_any_nonzero_streaming_byte_as_streaming() -> None:
    config = SensorConfig.decode(h("01 c8 00 04 f4 01 13 07"))
    assert config.streaming is True
    assert bytes(config)[-1] == 1


@pytest.mark.parametrize("token", [0, 255])
def test_command_tokens_at_both_edges_round_trip(token: int) -> None:
    for command in (StartStreaming(token), SetConfig(token, 100, 16, 2000), Calibrate(token)):
        assert decode(bytes(command)) == command
        assert bytes(command)[3] == token


# Sample arrays ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "dtype", "columns"),
    [(IMU_GOLDEN, np.dtype("<i2"), 6), (BAR_GOLDEN, np.dtype("<i4"), 2)],
)
def test_decoded_samples_are_read_only_views_of_the_input(
    data: bytes, dtype: np.dtype[np.signedinteger], columns: int
) -> None:
    frame = decode(data)
    assert isinstance(frame, ImuDataFrame | BarDataFrame)
    whole = np.frombuffer(data, dtype=np.uint8)
    assert np.shares_memory(frame.samples, whole)
    assert frame.samples.dtype == dtype
    assert frame.samples.shape == (frame.count, columns)
    assert not frame.samples.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        frame.samples[0, 0] = 1


@pytest.mark.parametrize("range_g", ACCEL_RANGES_G)
def test_accel_converts_counts_to_metres_per_second_squared(range_g: int) -> None:
    one_g = 32768 // range_g
    samples = np.array([[one_g, -one_g, 0, 0, 0, 0]], dtype=np.int16)
    frame = ImuDataFrame(
        seq=0, timestamp_us=0, interval_us=1, samples=samples, accel_range_g=range_g
    )
    np.testing.assert_allclose(frame.accel, [[G, -G, 0.0]], rtol=1e-12)
    assert frame.accel.dtype == np.float64
    assert frame.accel.shape == (1, 3)


def test_accel_at_two_g_golden() -> None:
    frame = decode(h("01 01 00 00 00 00 00 00 01 00 01 00 00 40 00 00 00 00 00 00 00 00 00 00"))
    assert isinstance(frame, ImuDataFrame)
    assert frame.accel_range_g == 2
    assert frame.accel[0, 0] == pytest.approx(9.80665, rel=1e-12)


@pytest.mark.parametrize("range_dps", GYRO_RANGES_DPS)
def test_gyro_converts_counts_to_radians_per_second(range_dps: int) -> None:
    samples = np.array([[0, 0, 0, 16384, -16384, 8192]], dtype=np.int16)
    frame = ImuDataFrame(
        seq=0, timestamp_us=0, interval_us=1, samples=samples, gyro_range_dps=range_dps
    )
    half = math.radians(range_dps) / 2
    np.testing.assert_allclose(frame.gyro, [[half, -half, half / 2]], rtol=1e-12)
    assert frame.gyro.shape == (1, 3)


def test_si_conversions_do_not_touch_the_samples() -> None:
    frame = decode(IMU_GOLDEN)
    assert isinstance(frame, ImuDataFrame)
    accel = frame.accel
    accel += 1.0
    np.testing.assert_array_equal(frame.samples, IMU_SAMPLES)


def test_from_si_quantises_and_clips() -> None:
    frame = ImuDataFrame.from_si(
        seq=0,
        timestamp_us=0,
        interval_us=1,
        accel=[[0.0, 0.0, G], [100.0, -100.0, 0.0]],
        gyro=[[math.radians(1000), 0.0, 0.0], [100.0, -100.0, 0.0]],
        accel_range_g=2,
        gyro_range_dps=2000,
    )
    np.testing.assert_array_equal(
        frame.samples, [[0, 0, 16384, 16384, 0, 0], [32767, -32768, 0, 32767, -32768, 0]]
    )
    bar = BarDataFrame.from_si(
        seq=0, timestamp_us=0, interval_us=1, position=[0.25, 1e4], velocity=[-1.5, -1e4]
    )
    np.testing.assert_array_equal(bar.samples, [[250_000, -1_500_000], [2**31 - 1, -(2**31)]])


@pytest.mark.parametrize(
    "samples",
    [
        pytest.param(np.array([[40000, 0, 0, 0, 0, 0]]), id="above-int16"),
        pytest.param(np.array([[-40000, 0, 0, 0, 0, 0]]), id="below-int16"),
        pytest.param(np.zeros((1, 6)), id="float"),
        pytest.param(np.zeros((0, 6), dtype=np.int16), id="empty"),
        pytest.param(np.zeros((256, 6), dtype=np.int16), id="too-many"),
        pytest.param(np.zeros((2, 5), dtype=np.int16), id="wrong-columns"),
        pytest.param(np.zeros(6, dtype=np.int16), id="one-dimensional"),
    ],
)
def test_imu_frame_rejects_samples_that_cannot_be_sent(samples: np.ndarray) -> None:
    with pytest.raises(MalformedFrameError, match="samples"):
        ImuDataFrame(seq=0, timestamp_us=0, interval_us=1, samples=samples)


def test_frame_accepts_wider_integer_samples_that_fit() -> None:
    samples = np.array([[-32768, 32767, 0, 1, 2, 3]], dtype=np.int64)
    frame = ImuDataFrame(seq=0, timestamp_us=0, interval_us=1, samples=samples)
    assert bytes(frame)[12:16] == h("00 80 ff 7f")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", -1),
        ("seq", 65536),
        ("timestamp_us", -1),
        ("timestamp_us", 2**32),
        ("interval_us", 0),
        ("interval_us", 65536),
        ("accel_range_g", 3),
        ("gyro_range_dps", 100),
    ],
)
def test_imu_frame_rejects_fields_out_of_range(field: str, value: int) -> None:
    kwargs: dict[str, object] = {
        "seq": 0,
        "timestamp_us": 0,
        "interval_us": 1,
        "samples": IMU_SAMPLES,
        field: value,
    }
    with pytest.raises(MalformedFrameError, match=str(value)):
        ImuDataFrame(**kwargs)  # type: ignore[arg-type]


# Malformed input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"", "at least 2 bytes, got 0", id="empty"),
        pytest.param(h("01"), "at least 2 bytes, got 1", id="one-byte"),
        pytest.param(h("01 01 00 00 00 00 00 00 01 00 01"), "12-byte header", id="imu-header"),
        pytest.param(h("01 02 00 00"), "12-byte header", id="bar-header"),
        pytest.param(h("01 10 64 00 00 00"), "STATUS frame must be 7 bytes, got 6", id="status"),
        pytest.param(h("01 10 64 00 00 00 00 00"), "must be 7 bytes, got 8", id="status-long"),
        pytest.param(h("01 20 01"), "COMMAND frame needs 4 bytes, got 3", id="command"),
        pytest.param(h("01 21 01 01"), "RESPONSE frame needs 5 bytes, got 4", id="response"),
    ],
)
def test_too_short_frames_raise(data: bytes, match: str) -> None:
    with pytest.raises(MalformedFrameError, match=match):
        decode(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(IMU_GOLDEN[:-1], "IMU_DATA frame of 2 samples must be 36 bytes, got 35"),
        pytest.param(IMU_GOLDEN + b"\0", "IMU_DATA frame of 2 samples must be 36 bytes, got 37"),
        pytest.param(IMU_GOLDEN[:24], "must be 36 bytes, got 24"),
        pytest.param(BAR_GOLDEN[:-4], "BAR_DATA frame of 1 samples must be 20 bytes, got 16"),
        pytest.param(BAR_GOLDEN + BAR_GOLDEN[12:], "must be 20 bytes, got 28"),
    ],
)
def test_wrong_length_for_sample_count_raises(data: bytes, match: str) -> None:
    with pytest.raises(MalformedFrameError, match=match):
        decode(data)


@pytest.mark.parametrize("frame_type", ["01", "02"])
def test_zero_samples_raise(frame_type: str) -> None:
    data = h(f"01 {frame_type} 00 00 00 00 00 00 01 00 00 00")
    with pytest.raises(MalformedFrameError, match="no samples"):
        decode(data)


def test_zero_interval_raises() -> None:
    data = h("01 02 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00")
    with pytest.raises(MalformedFrameError, match="interval_us 0"):
        decode(data)


@pytest.mark.parametrize("ranges", [0x04, 0x0F, 0x50, 0xF0, 0xFF, 0x54])
def test_imu_unknown_range_codes_raise(ranges: int) -> None:
    data = bytearray(IMU_GOLDEN)
    data[11] = ranges
    with pytest.raises(MalformedFrameError, match=f"range byte 0x{ranges:02x}"):
        decode(bytes(data))


@pytest.mark.parametrize("ranges", [0x01, 0x10, 0xFF])
def test_bar_nonzero_range_byte_raises(ranges: int) -> None:
    data = bytearray(BAR_GOLDEN)
    data[11] = ranges
    with pytest.raises(MalformedFrameError, match="BAR_DATA range byte must be 0"):
        decode(bytes(data))


@pytest.mark.parametrize("battery", [101, 200, 254])
def test_status_impossible_battery_raises(battery: int) -> None:
    with pytest.raises(MalformedFrameError, match=f"battery {battery}"):
        decode(bytes([1, 0x10, battery, 0, 0, 0, 0]))


@pytest.mark.parametrize("version", [0, 2, 255])
@pytest.mark.parametrize(
    "golden",
    [IMU_GOLDEN, BAR_GOLDEN, h("01 10 57 29 09 09 00"), h("01 20 01 01"), h("01 21 03 2a 00")],
    ids=["imu", "bar", "status", "command", "response"],
)
def test_other_protocol_versions_raise(version: int, golden: bytes) -> None:
    with pytest.raises(UnsupportedVersionError, match=f"version {version}") as caught:
        decode(bytes([version]) + golden[1:])
    assert isinstance(caught.value, MalformedFrameError)
    assert isinstance(caught.value, ValueError)


def test_other_version_of_an_unknown_frame_type_raises_too() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode(h("02 7e 00"))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(h("01 20 01 01 00"), "START_STREAMING takes 0 parameter bytes, got 1"),
        pytest.param(h("01 20 02 01 00 00"), "STOP_STREAMING takes 0 parameter bytes, got 2"),
        pytest.param(h("01 20 03 2b c8 00"), "SET_CONFIG takes 5 parameter bytes, got 2"),
        pytest.param(h("01 20 03 2b c8 00 04 f4 01 00"), "SET_CONFIG takes 5 .* got 6"),
        pytest.param(h("01 20 04 01 00"), "GET_CONFIG takes 0 parameter bytes, got 1"),
        pytest.param(h("01 20 05 01 b8"), "IDENTIFY takes 2 parameter bytes, got 1"),
        pytest.param(h("01 20 05 01 b8 0b 00"), "IDENTIFY takes 2 parameter bytes, got 3"),
        pytest.param(h("01 20 06 01"), "CALIBRATE takes 1 parameter bytes, got 0"),
        pytest.param(h("01 20 07 01 00 00 00 00"), "TIME_SYNC takes 0 parameter bytes, got 4"),
    ],
)
def test_wrong_command_parameter_length_raises(data: bytes, match: str) -> None:
    with pytest.raises(MalformedFrameError, match=match):
        decode(data)


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (b"", (0, 0)),
        (h("01"), (0, 0)),
        (h("01 20"), (0, 0)),
        (h("01 20 03"), (3, 0)),
        (h("01 20 03 2b c8 00"), (3, 0x2B)),
        (h("02 20 05 09"), (5, 9)),
    ],
)
def test_malformed_commands_are_addressed_from_bytes_2_and_3(
    data: bytes, header: tuple[int, int]
) -> None:
    assert command_header(data) == header


def test_payload_decoders_reject_wrong_lengths_and_kinds() -> None:
    with pytest.raises(MalformedFrameError, match="must be 8 bytes, got 7"):
        SensorConfig.decode(h("01 c8 00 04 f4 01 13"))
    with pytest.raises(MalformedFrameError, match="unknown sensor kind 9"):
        SensorConfig.decode(h("09 c8 00 04 f4 01 13 00"))
    with pytest.raises(MalformedFrameError, match="must be 4 bytes, got 5"):
        TimeSyncResult.decode(h("00 00 00 00 00"))


def test_set_config_checks_values_per_sensor_kind() -> None:
    assert SetConfig(0, 200, 4, 500).problem_for(SensorKind.IMU) is None
    assert SetConfig(0, 1000).problem_for(SensorKind.BAR_VELOCITY) is None
    problem = SetConfig(0, 300, 4, 500).problem_for(SensorKind.IMU)
    assert problem is not None
    assert "300" in problem
    assert "(25, 50, 100, 200, 400, 800)" in problem
    assert SetConfig(0, 200, 3, 500).problem_for(SensorKind.IMU) is not None
    assert SetConfig(0, 200, 4, 100).problem_for(SensorKind.IMU) is not None
    assert SetConfig(0, 800).problem_for(SensorKind.BAR_VELOCITY) is not None
    assert SetConfig(0, 1000, 4, 0).problem_for(SensorKind.BAR_VELOCITY) is not None


@pytest.mark.parametrize(
    "build",
    [
        lambda: StartStreaming(token=256),
        lambda: StartStreaming(token=-1),
        lambda: SetConfig(token=0, rate_hz=65536),
        lambda: SetConfig(token=0, rate_hz=100, accel_range_g=256),
        lambda: Identify(token=0, duration_ms=65536),
        lambda: Calibrate(token=0, kind=256),
        lambda: Response(opcode=256, token=0, status=Status.OK),
        lambda: Response(opcode=1, token=0, status=-1),
        lambda: StatusFrame(101, 20.0, StatusFlags(0)),
        lambda: StatusFrame(50, 400.0, StatusFlags(0)),
        lambda: StatusFrame(50, math.nan, StatusFlags(0)),
    ],
)
def test_values_that_do_not_fit_are_refused_at_construction(build: object) -> None:
    with pytest.raises(MalformedFrameError):
        build()  # type: ignore[operator]


# MTU --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("att_mtu", "imu", "bar"),
    [(23, 0, 1), (27, 1, 1), (185, 14, 21), (247, 19, 29), (517, 41, 62)],
)
def test_samples_per_frame(att_mtu: int, imu: int, bar: int) -> None:
    assert samples_per_frame(SensorKind.IMU, att_mtu) == imu
    assert samples_per_frame(SensorKind.BAR_VELOCITY, att_mtu) == bar
    # The largest frame fits one notification, and one more sample would not.
    assert 12 + 12 * imu <= att_mtu - 3 < 12 + 12 * (imu + 1)
    assert 12 + 8 * bar <= att_mtu - 3 < 12 + 8 * (bar + 1)


def test_samples_per_frame_takes_the_kind_as_a_plain_int() -> None:
    assert samples_per_frame(1, 247) == 19  # type: ignore[arg-type]
    assert samples_per_frame(2, 247) == 29  # type: ignore[arg-type]


def test_samples_per_frame_is_capped_by_the_count_byte() -> None:
    assert samples_per_frame(SensorKind.BAR_VELOCITY, 65535) == 255
    assert samples_per_frame(SensorKind.IMU, 0) == 0


# Fuzz -------------------------------------------------------------------------------


def _check_decodes_or_refuses(data: bytes) -> None:
    """Decode ``data``: only the package's errors may escape, and a frame re-encodes exactly."""
    try:
        frame = decode(data)
    except FirmwareProtocolError:
        return
    assert bytes(frame) == data


preambles = st.sampled_from([*FrameType, 0x00, 0x7E, 0xFF]).map(
    lambda frame_type: bytes([PROTOCOL_VERSION, frame_type])
)


@st.composite
def data_frames(draw: st.DrawFn) -> bytes:
    """Data frames with a plausible header; length, count and ranges sometimes wrong."""
    frame_type = draw(st.sampled_from([FrameType.IMU_DATA, FrameType.BAR_DATA]))
    sample_size = 12 if frame_type is FrameType.IMU_DATA else 8
    count = draw(st.integers(0, 255))
    ranges = draw(st.one_of(st.integers(0, 0xFF), st.just(0), st.just(0x43)))
    header = struct.pack(
        "<BBHIHBB",
        PROTOCOL_VERSION,
        frame_type,
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.integers(0, 0xFFFF)),
        count,
        ranges,
    )
    length = draw(st.sampled_from([count * sample_size, count * sample_size, 0, 1, 7]))
    return header + draw(st.binary(min_size=length, max_size=length))


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    opcode = draw(st.one_of(st.sampled_from(list(Opcode)), st.integers(0, 0xFF)))
    token = draw(st.integers(0, 0xFF))
    return bytes([PROTOCOL_VERSION, FrameType.COMMAND, opcode, token]) + draw(st.binary(max_size=8))


frames_to_fuzz = st.one_of(
    st.binary(max_size=64),
    st.tuples(preambles, st.binary(max_size=48)).map(b"".join),
    data_frames(),
    commands(),
    st.binary(min_size=5, max_size=5).map(lambda body: h("01 10") + body),
)


@FUZZ
@given(frames_to_fuzz)
def test_fuzz_decode_refuses_or_round_trips(data: bytes) -> None:
    _check_decodes_or_refuses(data)


@settings(max_examples=500, deadline=None)
@given(commands())
def test_fuzz_malformed_commands_are_still_addressed(data: bytes) -> None:
    assert command_header(data) == (data[2], data[3])
    try:
        command = decode(data)
    except MalformedFrameError:
        return
    assert isinstance(command, Command | UnknownCommand)
    assert isinstance(command, UnknownCommand) == (data[2] not in set(Opcode))
    response = command.response()
    assert (response.opcode, response.token) == (data[2], data[3])


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_fuzz_sensor_config(payload: bytes) -> None:
    try:
        config = SensorConfig.decode(payload)
    except FirmwareProtocolError:
        return
    # The codec normalises the streaming byte to 0/1; everything else is exact.
    assert bytes(config) == payload[:7] + bytes([payload[7] != 0])


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 0xFFFF),
        st.one_of(st.binary(max_size=10), st.binary(max_size=8).map(lambda b: b"SH" + b)),
        max_size=3,
    )
)
def test_fuzz_advertisement(manufacturer_data: dict[int, bytes]) -> None:
    try:
        advert = SensorAdvertisement.from_manufacturer_data(manufacturer_data)
    except FirmwareProtocolError:
        return
    if advert is None:
        payload = manufacturer_data.get(COMPANY_ID)
        assert payload is None or not payload.startswith(b"SH")
        return
    # Bytes after the 6-byte payload are ignored, not kept.
    assert bytes(advert) == manufacturer_data[COMPANY_ID][:6]


@pytest.mark.parametrize("kind", [0, *SensorKind, 3])
def test_every_advertised_kind_and_battery_byte(kind: int) -> None:
    for battery in range(256):
        payload = b"SH" + bytes([1, kind, battery, 0x07])
        if kind not in set(SensorKind) or 100 < battery < 255:
            with pytest.raises(MalformedFrameError):
                SensorAdvertisement.decode(payload)
            continue
        advert = SensorAdvertisement.decode(payload)
        assert (advert.kind, advert.battery_pct) == (kind, battery)
        assert bytes(advert) == payload


def test_every_advertised_flags_byte_round_trips() -> None:
    for flags in range(256):
        payload = b"SH" + bytes([1, SensorKind.IMU, 50, flags])
        advert = SensorAdvertisement.decode(payload)
        assert int(advert.flags) == flags
        assert advert.pairing_mode == bool(flags & 0x01)
        assert bytes(advert) == payload
