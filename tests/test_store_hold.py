"""The bounded hold of writes the disk refused: order kept, frames let go first, drops counted."""

from __future__ import annotations

import pytest

from sensorhub.store._hold import Worth, WriteHold


def test_everything_comes_back_in_the_order_it_was_put() -> None:
    hold: WriteHold[str] = WriteHold(max_bytes=1000)
    for name, worth in [("start", Worth.SESSION), ("f1", Worth.FRAME), ("rep1", Worth.RECORD)]:
        hold.put(name, worth=worth, size=10)
    hold.put("f2", worth=Worth.FRAME, size=10)
    hold.put("end", worth=Worth.SESSION, size=10)
    assert list(hold) == ["start", "f1", "rep1", "f2", "end"]
    assert (hold.frames, hold.events, hold.bytes) == (2, 3, 50)
    assert hold.oldest(2) == ["start", "f1"]
    hold.forget(2)
    assert list(hold) == ["rep1", "f2", "end"]
    assert hold.bytes == 30
    hold.forget(10)  # more than held: all gone, no error
    assert len(hold) == 0
    assert hold.bytes == 0


def test_at_the_bound_the_oldest_frames_go_first_and_every_event_stays() -> None:
    hold: WriteHold[str] = WriteHold(max_bytes=100)
    hold.put("start", worth=Worth.SESSION, size=10)
    for i in range(5):
        hold.put(f"frame{i}", worth=Worth.FRAME, size=20)
    assert hold.dropped_frames == 1  # 10 + 5 * 20 = 110 > 100
    hold.put("rep1", worth=Worth.RECORD, size=20)
    hold.put("set1", worth=Worth.RECORD, size=20)
    assert list(hold) == ["start", "frame3", "frame4", "rep1", "set1"]
    assert (hold.dropped_frames, hold.dropped_records) == (3, 0)
    assert hold.bytes <= hold.max_bytes


def test_with_no_frame_left_the_oldest_records_go_but_never_a_session_write() -> None:
    hold: WriteHold[str] = WriteHold(max_bytes=50)
    hold.put("start", worth=Worth.SESSION, size=10)
    hold.put("frame0", worth=Worth.FRAME, size=10)
    for i in range(4):
        hold.put(f"rep{i}", worth=Worth.RECORD, size=10)
    hold.put("end", worth=Worth.SESSION, size=10)
    # 70 bytes put into 50: the frame first, then the oldest rep.
    assert list(hold) == ["start", "rep1", "rep2", "rep3", "end"]
    assert (hold.dropped_frames, hold.dropped_records) == (1, 1)
    # Session writes alone may pass the bound: they are never dropped.
    for i in range(10):
        hold.put(f"athlete{i}", worth=Worth.SESSION, size=10)
    assert hold.events == 12
    assert hold.frames == 0
    assert hold.dropped_records == 4  # every rep went before any session write
    assert [item for item in hold if item.startswith("rep")] == []
    assert list(hold)[:2] == ["start", "end"]
    hold.reset_counts()
    assert (hold.dropped_frames, hold.dropped_records) == (0, 0)


def test_a_frame_larger_than_the_bound_is_itself_let_go() -> None:
    hold: WriteHold[str] = WriteHold(max_bytes=100)
    hold.put("rep", worth=Worth.RECORD, size=60)
    hold.put("huge frame", worth=Worth.FRAME, size=60)
    assert list(hold) == ["rep"]
    assert hold.dropped_frames == 1


def test_a_bound_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WriteHold(max_bytes=0)
