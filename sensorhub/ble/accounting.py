"""Exact sample-loss accounting for one sensor's data stream.

The sensor numbers its data frames (``seq``, u16, +1 per frame built, wrapping
65535 → 0) and stamps each with the sensor-clock time of its first sample
(``timestamp_us``, u32 µs, wrapping 2³² - 1 → 0) on an exact grid of ``interval_us``;
see "Sequence numbers and sample loss" in ``firmware_protocol/PROTOCOL.md``. A frame
the sensor built but could not deliver still used up its ``seq`` and its stretch of
time, so the two together tell exactly how many frames and samples went missing.

Rules, applied to each frame by :meth:`StreamAccounting.observe`. ``last`` is the last
*accepted* frame (verdict IN_ORDER, GAP or RESTART); all seq arithmetic is modulo 2¹⁶
and all time arithmetic modulo 2³², so wraps are ordinary::

    expected_seq = (last.seq + 1) mod 2¹⁶
    expected_ts  = (last.timestamp_us + last.count * last.interval_us) mod 2³²
    ahead        = (seq - expected_seq) mod 2¹⁶       # frames missing if < 2¹⁵
    gap_us       = (timestamp_us - expected_ts) mod 2³²

1. First frame: IN_ORDER, nothing lost.
2. ``seq == last.seq`` and ``timestamp_us == last.timestamp_us``: DUPLICATE. Dropped;
   counted in ``duplicates``.
3. ``ahead ≥ 2¹⁵`` (the frame is older than expected, ``behind = (expected_seq - seq)
   mod 2¹⁶`` frames back):

   - LATE if it fits in the stream's past: same interval, ``behind ≤ reorder_window``,
     and ``back_us = (expected_ts - timestamp_us) mod 2³²`` is below 2³¹, a whole
     multiple of the interval, and leaves room for this frame and the ``behind - 1``
     frames after it (``back_us / interval ≥ count + behind - 1``). Dropped; counted in
     ``late``. It was counted lost when its gap was seen, and stays counted; the
     expectation does not move backwards. (A copy of an older frame, not the last one,
     also lands here.)
   - otherwise RESTART with nothing lost: the sensor rebooted (``seq`` and clock reset)
     or is broken. ``reorder_window`` bounds how long a rebooted sensor's frames could
     be mistaken for late ones.
4. After :meth:`StreamAccounting.expect_restart`, the next frame that is not dropped by
   rules 2-3 is a RESTART; if ``1 ≤ ahead < 2¹⁵`` the ``ahead`` frames are counted lost
   but their samples are not (0), since the time between the frames includes a
   stretch in which the sensor was not streaming.
5. ``ahead == 0`` (no frame missing): IN_ORDER if ``gap_us == 0`` and the interval is
   unchanged; otherwise RESTART with nothing lost (the sensor was stopped and started
   again, its configuration changed, or its clock jumped).
6. ``1 ≤ ahead < 2¹⁵``: GAP if the interval is unchanged, ``gap_us < 2³¹``, and
   ``gap_us = k * interval_us`` with ``ahead ≤ k ≤ 255 * ahead`` (every missing frame
   held 1..255 samples): ``lost_frames = ahead``, ``lost_samples = k``. Otherwise the
   timestamps contradict the sequence numbers (the sensor rebooted, was restarted, or
   is broken): RESTART with ``lost_frames = ahead`` (those frames are certainly
   missing) but ``lost_samples = 0``, because how many samples they held is unknown.
   This and rule 4 are the only places where the accounting can undercount.

Every RESTART increments ``restarts``. Accepted frames (IN_ORDER, GAP, RESTART) add to
``frames_received`` and ``samples_received``; dropped ones (DUPLICATE, LATE) do not.
Frames lost before the first accepted frame, or after the last one, cannot be seen.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sensorhub.errors import ConfigError

__all__ = ["FrameVerdict", "Observation", "StreamAccounting"]

_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15
_TS_MASK = (1 << 32) - 1
_TS_HALF = 1 << 31
_MAX_COUNT = 255
_MAX_INTERVAL_US = 0xFFFF


class FrameVerdict(enum.Enum):
    """What one data frame means for the stream (see the module docstring)."""

    IN_ORDER = "in_order"
    GAP = "gap"
    RESTART = "restart"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class Observation:
    """The verdict on one frame and the loss attributed just before it."""

    verdict: FrameVerdict
    lost_frames: int
    lost_samples: int

    @property
    def accepted(self) -> bool:
        """Whether the frame's samples belong in the stream (DUPLICATE and LATE do not)."""
        return self.verdict not in {FrameVerdict.DUPLICATE, FrameVerdict.LATE}


_IN_ORDER = Observation(FrameVerdict.IN_ORDER, 0, 0)
_RESTART = Observation(FrameVerdict.RESTART, 0, 0)
_DUPLICATE = Observation(FrameVerdict.DUPLICATE, 0, 0)
_LATE = Observation(FrameVerdict.LATE, 0, 0)


class StreamAccounting:
    """Exact loss accounting for one sensor's data stream, from sequence numbers and timestamps.

    Feed every received data frame's header to :meth:`observe`, in arrival order; call
    :meth:`expect_restart` in the same order, just before writing START_STREAMING or
    after changing the configuration. The counters are plain ints.
    """

    __slots__ = (
        "_count",
        "_interval_us",
        "_reorder_window",
        "_restart_pending",
        "_seq",
        "_started",
        "_timestamp_us",
        "duplicates",
        "frames_lost",
        "frames_received",
        "late",
        "restarts",
        "samples_lost",
        "samples_received",
    )

    def __init__(self, *, reorder_window: int = 64) -> None:
        if not 1 <= reorder_window < _SEQ_HALF:
            msg = f"reorder_window={reorder_window!r} must be 1..32767 frames (default 64)"
            raise ConfigError(msg)
        self._reorder_window = reorder_window
        self._started = False
        self._restart_pending = False
        self._seq = 0
        self._timestamp_us = 0
        self._interval_us = 0
        self._count = 0
        self.frames_received = 0
        self.samples_received = 0
        self.frames_lost = 0
        self.samples_lost = 0
        self.duplicates = 0
        self.late = 0
        self.restarts = 0

    def expect_restart(self) -> None:
        """Note that the stream is being (re)started or reconfigured.

        The next accepted frame is a RESTART: a jump in time before it is not loss.
        """
        self._restart_pending = True

    def observe(  # noqa: PLR0911 - one return per rule of the module docstring
        self, seq: int, timestamp_us: int, interval_us: int, count: int
    ) -> Observation:
        """Classify one frame by its header fields and count what was lost before it."""
        if not (
            0 <= seq < _SEQ_MOD
            and 0 <= timestamp_us <= _TS_MASK
            and 1 <= interval_us <= _MAX_INTERVAL_US
            and 1 <= count <= _MAX_COUNT
        ):
            msg = (
                f"frame header out of range: seq={seq!r} (u16), timestamp_us={timestamp_us!r}"
                f" (u32), interval_us={interval_us!r} (1..65535), count={count!r} (1..255)"
            )
            raise ConfigError(msg)
        if not self._started:
            self._started = True
            self._restart_pending = False
            return self._accept(seq, timestamp_us, interval_us, count, _IN_ORDER)
        if seq == self._seq and timestamp_us == self._timestamp_us:
            self.duplicates += 1
            return _DUPLICATE

        expected_seq = (self._seq + 1) & 0xFFFF
        expected_ts = (self._timestamp_us + self._count * self._interval_us) & _TS_MASK
        ahead = (seq - expected_seq) & 0xFFFF
        same_interval = interval_us == self._interval_us

        if ahead >= _SEQ_HALF:
            behind = _SEQ_MOD - ahead
            back_us = (expected_ts - timestamp_us) & _TS_MASK
            if (
                same_interval
                and behind <= self._reorder_window
                and back_us < _TS_HALF
                and back_us % interval_us == 0
                and back_us // interval_us >= count + behind - 1
            ):
                self.late += 1
                return _LATE
            return self._restart(seq, timestamp_us, interval_us, count, 0)

        if self._restart_pending:
            return self._restart(seq, timestamp_us, interval_us, count, ahead)

        gap_us = (timestamp_us - expected_ts) & _TS_MASK
        if ahead == 0:
            if same_interval and gap_us == 0:
                return self._accept(seq, timestamp_us, interval_us, count, _IN_ORDER)
            return self._restart(seq, timestamp_us, interval_us, count, 0)

        if same_interval and gap_us < _TS_HALF and gap_us % interval_us == 0:
            lost_samples = gap_us // interval_us
            if ahead <= lost_samples <= _MAX_COUNT * ahead:
                self.frames_lost += ahead
                self.samples_lost += lost_samples
                observation = Observation(FrameVerdict.GAP, ahead, lost_samples)
                return self._accept(seq, timestamp_us, interval_us, count, observation)
        return self._restart(seq, timestamp_us, interval_us, count, ahead)

    def as_dict(self) -> dict[str, int]:
        """The counters by name, for status reports and logs."""
        return {
            "frames_received": self.frames_received,
            "samples_received": self.samples_received,
            "frames_lost": self.frames_lost,
            "samples_lost": self.samples_lost,
            "duplicates": self.duplicates,
            "late": self.late,
            "restarts": self.restarts,
        }

    def _restart(
        self, seq: int, timestamp_us: int, interval_us: int, count: int, lost_frames: int
    ) -> Observation:
        self._restart_pending = False
        self.restarts += 1
        if lost_frames:
            self.frames_lost += lost_frames
            observation = Observation(FrameVerdict.RESTART, lost_frames, 0)
        else:
            observation = _RESTART
        return self._accept(seq, timestamp_us, interval_us, count, observation)

    def _accept(
        self, seq: int, timestamp_us: int, interval_us: int, count: int, observation: Observation
    ) -> Observation:
        self._seq = seq
        self._timestamp_us = timestamp_us
        self._interval_us = interval_us
        self._count = count
        self.frames_received += 1
        self.samples_received += count
        return observation
