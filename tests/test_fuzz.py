"""Untrusted input never crashes us: radio frames and CSV recordings, fuzzed.

The frame decoder gets 100,000 seeded byte-level mutations of valid frames and random
bytes (a plain numpy loop: hypothesis spends milliseconds per example, far too slow
for that many), then 2,000 structure-aware hypothesis cases. Only the package's own
``FirmwareProtocolError`` may escape it, and whatever it accepts re-encodes to the
same bytes. ``sensorhub analyze`` gets fuzzed CSV files: it analyses them or exits 2
with one ``sensorhub: error:`` line, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocol import (
    BarDataFrame,
    FirmwareProtocolError,
    ImuDataFrame,
    Response,
    SetConfig,
    StartStreaming,
    StatusFrame,
    TimeSync,
    decode,
)
from firmware_protocol.frames import StatusFlags
from sensorhub.cli import main

BULK_CASES = 100_000
HYPOTHESIS_CASES = 2_000


def seed_frames() -> list[bytes]:
    """One valid frame of every kind the radio carries, at several sizes."""
    rng = np.random.default_rng(7)
    frames: list[bytes] = []
    for count in (1, 2, 19, 40):
        samples = rng.integers(-32768, 32767, size=(count, 6), dtype=np.int16)
        frames.append(bytes(ImuDataFrame(count, 2**32 - 5, 5000, samples, 16, 2000)))
        frames.append(
            bytes(
                BarDataFrame.from_si(
                    seq=0xFFFF,
                    timestamp_us=count,
                    interval_us=10_000,
                    position=rng.uniform(-1, 1, count),
                    velocity=rng.uniform(-3, 3, count),
                )
            )
        )
    frames.append(bytes(StatusFrame(battery_pct=87, temperature_c=31.5, flags=StatusFlags(5))))
    frames += [bytes(SetConfig(3, 200, 16, 2000)), bytes(TimeSync(9)), bytes(StartStreaming(1))]
    frames.append(bytes(Response(opcode=0x06, token=9, status=0, payload=struct.pack("<I", 7))))
    return frames


SEEDS = seed_frames()


def check(data: bytes) -> bool:
    """Decode ``data``; True if it was accepted. Anything but our errors fails the test."""
    try:
        frame = decode(data)
    except FirmwareProtocolError:
        return False
    except Exception as exc:  # noqa: BLE001 - anything else is the failure we look for
        pytest.fail(f"decode({data.hex()}) raised {exc!r}")
    assert bytes(frame) == data, data.hex()
    return True


def mutate(rng: np.random.Generator, case: int) -> bytes:
    """One input: five kinds of damage in turn."""
    seed = SEEDS[case % len(SEEDS)]
    kind = case % 5
    if kind == 0:  # random bytes, half of them behind a valid preamble
        body = rng.bytes(int(rng.integers(0, 300)))
        return (bytes([1, int(rng.integers(0, 256))]) + body) if case % 2 else body
    if kind == 1:  # a few bits flipped anywhere
        damaged = bytearray(seed)
        for position in rng.integers(0, len(seed), size=int(rng.integers(1, 4))):
            damaged[position] ^= int(rng.integers(1, 256))
        return bytes(damaged)
    if kind == 2:  # cut short
        return seed[: int(rng.integers(0, len(seed)))]
    if kind == 3:  # trailing bytes
        return seed + rng.bytes(int(rng.integers(1, 40)))
    damaged = bytearray(seed)  # one header field byte replaced
    damaged[int(rng.integers(0, min(12, len(seed))))] = int(rng.integers(0, 256))
    return bytes(damaged)


def test_seed_frames_are_valid() -> None:
    assert all(check(seed) for seed in SEEDS)


def test_decoder_survives_100000_mutated_and_random_frames() -> None:
    rng = np.random.default_rng(20240601)
    accepted = sum(check(mutate(rng, case)) for case in range(BULK_CASES))
    # Both ways out were exercised: the mutations are neither all fatal nor all harmless.
    assert 1_000 < accepted < BULK_CASES - 10_000, accepted


@st.composite
def edited_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with byte edits, a cut and an extension chosen by hypothesis."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    edits = draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=4)
    )
    for position, value in edits:
        data[position] = value
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=8))


@settings(
    max_examples=HYPOTHESIS_CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(edited_frames())
def test_decoder_survives_structured_edits(data: bytes) -> None:
    check(data)


# CSV recordings for `sensorhub analyze` ----------------------------------------------

COLUMNS = ["t", "ax", "ay", "az", "gx", "gy", "gz"]
cells = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["", " ", "nan", "-inf", "1e308", "-1e308", "1e-320", "0x10", "1_0", "abc"]),
    st.sampled_from(['"1"', '"', "1,2", "\x00", "\u00e9", "9" * 400]),
    st.text(max_size=6),
)


@st.composite
def recordings(draw: st.DrawFn) -> bytes:
    """A CSV a person or a broken exporter might hand us; some are perfectly fine."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    header = draw(st.permutations([*COLUMNS, "extra"]))
    if draw(st.booleans()):
        header = header[: draw(st.integers(0, len(header)))]
    rows = draw(st.integers(0, 300))
    rate = draw(st.sampled_from([10.0, 100.0, 1000.0, 1e-9, 1e9]))
    t = np.arange(rows) / rate
    if draw(st.booleans()):
        t = t[::-1]  # time running backwards
    if draw(st.booleans()):
        t = np.round(t, 1)  # many repeated timestamps
    lines = [",".join(header)]
    for i in range(rows):
        values = {"t": repr(float(t[i])), "az": "9.81", "extra": "x"}
        lines.append(",".join(values.get(name, "0.1") for name in header))
    for _ in range(draw(st.integers(0, 3))):
        row = draw(st.integers(1, max(1, rows)))
        if row < len(lines):
            fields = lines[row].split(",")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(cells)
            lines[row] = ",".join(fields)
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n\n"]))
    return text.encode("utf-8", errors="surrogatepass")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recordings(), st.sampled_from(["bar", "pelvis"]), st.sampled_from(["g", "m/s2"]))
def test_analyze_takes_any_csv_or_says_what_is_wrong(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, role: str, unit: str
) -> None:
    path = tmp_path_factory.mktemp("csv") / "recording.csv"
    path.write_bytes(content)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        status = main(
            ["analyze", str(path), "--role", role, "--exercise", "squat", "--accel-unit", unit]
        )
    said = errors.getvalue()
    assert status in {0, 1, 2}, said
    if status == 2:
        assert said.startswith("sensorhub: error: "), said
        assert said.count("\n") == 1, said
    if status == 1:  # analysed, and no rep found: it says why, in one line
        assert said.startswith("sensorhub: "), said
        assert ": no reps found: " in said, said
        assert said.count("\n") == 1, said


def test_analyze_refuses_a_nul_byte_and_an_endless_field(tmp_path: Path) -> None:
    header = ",".join(COLUMNS)
    for name, body in [
        ("nul.csv", f"{header}\n0,0,0,9.8,0,0,\x000\n"),
        ("field.csv", f'{header}\n"{"1" * 200_000}\n'),
    ]:
        path = tmp_path / name
        path.write_text(body)
        assert main(["analyze", str(path), "--role", "bar", "--exercise", "squat"]) == 2


def test_analyze_refuses_values_too_large_to_compute_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Finite, but 1e308 g is infinite in m/s²: no rep may come out of it as NaN.
    rows = [",".join(COLUMNS)] + [f"{i / 100},1e308,0,1,0,0,0" for i in range(300)]
    path = tmp_path / "huge.csv"
    path.write_text("\n".join(rows))
    status = main(
        [
            "analyze",
            str(path),
            "--role",
            "bar",
            "--exercise",
            "squat",
            "--accel-unit",
            "g",
            "--json",
        ]
    )
    out = capsys.readouterr()
    if status == 0:
        assert "NaN" not in out.out
        assert "Infinity" not in out.out
    else:
        assert status == 2
        assert out.err.startswith("sensorhub: error: ")
