"""Loss accounting against the rules in sensorhub/ble/accounting.py's docstring.

Golden cases are worked out by hand from those rules; the property tests compare the
accounting with the ground truth of a generated stream, as the virtual sensor's own
counters are compared in the end-to-end tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorhub.ble.accounting import FrameVerdict, Observation, StreamAccounting
from sensorhub.errors import ConfigError

IV = 5_000  # 200 Hz
U32 = 1 << 32


@dataclass(frozen=True)
class Frame:
    seq: int
    timestamp_us: int
    interval_us: int
    count: int


def feed(acc: StreamAccounting, frame: Frame) -> Observation:
    return acc.observe(frame.seq, frame.timestamp_us, frame.interval_us, frame.count)


def stream(seq0: int, ts0: int, counts: list[int], interval: int = IV) -> list[Frame]:
    """Consecutive frames as the sensor builds them, wrapping seq and time."""
    frames = []
    seq, ts = seq0, ts0
    for count in counts:
        frames.append(Frame(seq & 0xFFFF, ts % U32, interval, count))
        seq += 1
        ts += count * interval
    return frames


def verdicts(acc: StreamAccounting, frames: list[Frame]) -> list[Observation]:
    return [feed(acc, f) for f in frames]


def test_first_frame_is_in_order() -> None:
    acc = StreamAccounting()
    assert acc.observe(1234, 999, IV, 7) == Observation(FrameVerdict.IN_ORDER, 0, 0)
    assert acc.as_dict() == {
        "frames_received": 1,
        "samples_received": 7,
        "frames_lost": 0,
        "samples_lost": 0,
        "duplicates": 0,
        "late": 0,
        "restarts": 0,
    }


def test_consecutive_frames_are_in_order() -> None:
    acc = StreamAccounting()
    seen = verdicts(acc, stream(10, 1_000_000, [3, 1, 19, 4]))
    assert [o.verdict for o in seen] == [FrameVerdict.IN_ORDER] * 4
    assert (acc.frames_received, acc.samples_received, acc.samples_lost) == (4, 27, 0)


def test_gap_counts_frames_and_samples_from_timestamps() -> None:
    acc = StreamAccounting()
    acc.observe(100, 1_000_000, IV, 4)  # next expected: seq 101 at 1_020_000
    # frames 101 (6 samples) and 102 (2 samples) lost
    seen = acc.observe(103, 1_020_000 + 8 * IV, IV, 5)
    assert seen == Observation(FrameVerdict.GAP, 2, 8)
    assert (acc.frames_lost, acc.samples_lost, acc.frames_received) == (2, 8, 2)
    assert acc.observe(104, 1_060_000 + 5 * IV, IV, 1).verdict is FrameVerdict.IN_ORDER


def test_seq_and_time_wrap_in_order_and_across_a_gap() -> None:
    acc = StreamAccounting()
    first = Frame(65535, U32 - 2 * IV, IV, 2)  # ends exactly at the time wrap
    assert feed(acc, first).verdict is FrameVerdict.IN_ORDER
    assert acc.observe(0, 0, IV, 3).verdict is FrameVerdict.IN_ORDER
    # seq 1 (4 samples) lost; seq 2 starts 7 samples after 0
    assert acc.observe(2, 7 * IV, IV, 1) == Observation(FrameVerdict.GAP, 1, 4)
    # a gap straddling both wraps at once
    acc = StreamAccounting()
    acc.observe(65534, U32 - 3 * IV, IV, 1)
    assert acc.observe(1, 4 * IV, IV, 1) == Observation(FrameVerdict.GAP, 2, 6)


def test_duplicate_is_dropped() -> None:
    acc = StreamAccounting()
    acc.observe(5, 0, IV, 3)
    assert acc.observe(5, 0, IV, 3) == Observation(FrameVerdict.DUPLICATE, 0, 0)
    assert acc.observe(6, 3 * IV, IV, 3).verdict is FrameVerdict.IN_ORDER
    assert (acc.duplicates, acc.frames_received, acc.samples_received) == (1, 2, 6)


def test_late_frame_stays_lost_and_does_not_move_the_expectation() -> None:
    acc = StreamAccounting()
    frames = stream(20, 0, [2, 3, 4, 5])
    feed(acc, frames[0])
    assert feed(acc, frames[2]) == Observation(FrameVerdict.GAP, 1, 3)
    assert feed(acc, frames[1]) == Observation(FrameVerdict.LATE, 0, 0)
    assert feed(acc, frames[3]).verdict is FrameVerdict.IN_ORDER
    assert (acc.late, acc.frames_lost, acc.samples_lost, acc.frames_received) == (1, 1, 3, 3)


def test_old_copy_of_an_earlier_frame_is_late_not_a_restart() -> None:
    acc = StreamAccounting()
    frames = stream(0, 0, [2, 3, 4, 5])
    verdicts(acc, frames[:3])
    assert feed(acc, frames[0]).verdict is FrameVerdict.LATE
    assert feed(acc, frames[3]).verdict is FrameVerdict.IN_ORDER
    assert (acc.frames_lost, acc.restarts) == (0, 0)


def test_time_jump_without_seq_gap_is_a_restart_without_loss() -> None:
    acc = StreamAccounting()
    acc.observe(7, 0, IV, 4)
    # stopped and started again: seq continues, the clock has moved on 9.5 s
    assert acc.observe(8, 9_500_000, IV, 4) == Observation(FrameVerdict.RESTART, 0, 0)
    assert acc.observe(9, 9_520_000, IV, 4).verdict is FrameVerdict.IN_ORDER
    assert (acc.restarts, acc.frames_lost, acc.samples_lost) == (1, 0, 0)


@pytest.mark.parametrize(
    ("timestamp_us", "interval_us"),
    [
        pytest.param(20_000, 10_000, id="interval changed"),
        pytest.param(20_000 - IV, IV, id="clock stepped back"),
        pytest.param(20_000 + 1, IV, id="off the grid"),
    ],
)
def test_no_seq_gap_but_inconsistent_time_is_a_restart(timestamp_us: int, interval_us: int) -> None:
    acc = StreamAccounting()
    acc.observe(7, 0, IV, 4)
    assert acc.observe(8, timestamp_us, interval_us, 1) == Observation(FrameVerdict.RESTART, 0, 0)
    assert acc.restarts == 1


@pytest.mark.parametrize(
    "timestamp_us",
    [
        pytest.param(20_000 + 1 * IV, id="fewer samples than frames"),
        pytest.param(20_000 + 7 * IV + 1, id="off the grid"),
        pytest.param(20_000 - IV, id="backwards"),
        pytest.param(20_000 + 2 * 255 * IV + IV, id="more than 255 samples a frame"),
        pytest.param((20_000 + (1 << 31)) % U32, id="half the clock away"),
    ],
)
def test_seq_gap_with_inconsistent_time_counts_frames_only(timestamp_us: int) -> None:
    acc = StreamAccounting()
    acc.observe(7, 0, IV, 4)
    assert acc.observe(10, timestamp_us, IV, 1) == Observation(FrameVerdict.RESTART, 2, 0)
    assert (acc.restarts, acc.frames_lost, acc.samples_lost) == (1, 2, 0)


def test_gap_of_exactly_255_samples_per_frame_is_counted() -> None:
    acc = StreamAccounting()
    acc.observe(7, 0, IV, 4)
    assert acc.observe(10, 20_000 + 510 * IV, IV, 1) == Observation(FrameVerdict.GAP, 2, 510)


def test_expect_restart_accepts_a_time_jump_and_counts_missing_frames_only() -> None:
    acc = StreamAccounting()
    acc.observe(7, 0, IV, 4)
    acc.expect_restart()
    # looks like a consistent gap of 2 frames, 40 samples, but the sensor was stopped
    assert acc.observe(10, 20_000 + 40 * IV, IV, 4) == Observation(FrameVerdict.RESTART, 2, 0)
    assert acc.observe(11, 20_000 + 44 * IV, IV, 4).verdict is FrameVerdict.IN_ORDER
    assert (acc.restarts, acc.frames_lost, acc.samples_lost) == (1, 2, 0)


def test_expect_restart_lets_a_duplicate_through_as_duplicate() -> None:
    acc = StreamAccounting()
    acc.observe(7, 0, IV, 4)
    acc.expect_restart()
    assert acc.observe(7, 0, IV, 4).verdict is FrameVerdict.DUPLICATE
    assert acc.observe(8, 5_000_000, IV, 4).verdict is FrameVerdict.RESTART


def test_reboot_with_seq_behind_is_a_restart_and_the_new_stream_is_followed() -> None:
    acc = StreamAccounting()
    verdicts(acc, stream(5000, 3_000_000_000, [4] * 3))
    # rebooted: seq and clock start again from zero, on the same grid
    after = stream(0, 0, [4] * 3)
    assert [o.verdict for o in verdicts(acc, after)] == [
        FrameVerdict.RESTART,
        FrameVerdict.IN_ORDER,
        FrameVerdict.IN_ORDER,
    ]
    assert (acc.restarts, acc.late, acc.frames_lost) == (1, 0, 0)


def test_seq_behind_but_time_ahead_is_a_restart() -> None:
    acc = StreamAccounting()
    acc.observe(10, 0, IV, 4)
    assert acc.observe(9, 40_000, IV, 4).verdict is FrameVerdict.RESTART


@pytest.mark.parametrize(
    ("seq", "timestamp_us", "interval_us", "count"),
    [
        (65536, 0, IV, 1),
        (0, U32, IV, 1),
        (0, 0, 0, 1),
        (0, 0, 65536, 1),
        (0, 0, IV, 0),
        (-1, 0, IV, 1),
    ],
)
def test_out_of_range_header_fields_raise(
    seq: int, timestamp_us: int, interval_us: int, count: int
) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        StreamAccounting().observe(seq, timestamp_us, interval_us, count)


def test_reorder_window_is_validated() -> None:
    with pytest.raises(ConfigError, match="reorder_window=0"):
        StreamAccounting(reorder_window=0)


@st.composite
def lossy_streams(draw: st.DrawFn) -> tuple[list[Frame], list[Frame], int, int]:
    """A true stream, and what arrived of it: frames deleted, some duplicated."""
    counts = draw(st.lists(st.integers(1, 19), min_size=2, max_size=200))
    interval = draw(st.sampled_from([1_000, 2_500, 5_000, 10_000, 40_000]))
    seq0 = draw(st.integers(0, 0xFFFF))
    ts0 = draw(st.integers(0, U32 - 1))
    truth = stream(seq0, ts0, counts, interval)
    # the first and last frames arrive; loss outside them cannot be seen
    kept = [
        True,
        *draw(st.lists(st.booleans(), min_size=len(truth) - 2, max_size=len(truth) - 2)),
        True,
    ]
    doubled = draw(st.lists(st.booleans(), min_size=len(truth), max_size=len(truth)))
    arrived: list[Frame] = []
    for frame, keep, twice in zip(truth, kept, doubled, strict=True):
        if keep:
            arrived.extend([frame, frame] if twice else [frame])
    lost = [f for f, keep in zip(truth, kept, strict=True) if not keep]
    return truth, arrived, len(lost), sum(f.count for f in lost)


@settings(max_examples=300, deadline=None)
@given(lossy_streams())
def test_loss_is_counted_exactly(case: tuple[list[Frame], list[Frame], int, int]) -> None:
    truth, arrived, frames_lost, samples_lost = case
    acc = StreamAccounting()
    seen = verdicts(acc, arrived)
    assert (acc.frames_lost, acc.samples_lost) == (frames_lost, samples_lost)
    assert acc.samples_received + acc.samples_lost == sum(f.count for f in truth)
    assert acc.duplicates == len(arrived) - acc.frames_received
    assert acc.restarts == acc.late == 0
    assert sum(o.lost_samples for o in seen) == samples_lost


@settings(max_examples=200, deadline=None)
@given(lossy_streams(), lossy_streams(), st.integers(1, U32 - 1), st.booleans())
def test_stop_and_restart_adds_no_loss(
    before: tuple[list[Frame], list[Frame], int, int],
    after: tuple[list[Frame], list[Frame], int, int],
    pause_us: int,
    announced: bool,
) -> None:
    """Stopped after one lossy stream, started again: seq carries on, the clock jumped."""
    truth, arrived, frames_lost, samples_lost = before
    _, arrived_after, frames_lost_after, samples_lost_after = after
    last = truth[-1]
    first = arrived_after[0]
    seq_shift = last.seq + 1 - first.seq
    ts_shift = last.timestamp_us + last.count * last.interval_us + pause_us - first.timestamp_us
    moved = [
        Frame(
            (f.seq + seq_shift) & 0xFFFF, (f.timestamp_us + ts_shift) % U32, f.interval_us, f.count
        )
        for f in arrived_after
    ]
    acc = StreamAccounting()
    verdicts(acc, arrived)
    if announced:
        acc.expect_restart()
    seen = verdicts(acc, moved)
    assert seen[0] == Observation(FrameVerdict.RESTART, 0, 0)
    assert acc.frames_lost == frames_lost + frames_lost_after
    assert acc.samples_lost == samples_lost + samples_lost_after
    assert acc.restarts == 1
