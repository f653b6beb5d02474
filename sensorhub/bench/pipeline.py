"""Pipeline throughput: IMU samples per second per core, against imufusion alone.

Realistic frames come from the virtual sensor models (a hip-thrust scenario, a bar and
a pelvis IMU at 200 Hz, quantised into :class:`ImuDataFrame` bytes as the firmware sends
them). The pipeline is timed from those bytes: ``decode`` and scaling to SI
(:func:`decode_imu`) → per-sample hub times as the link maps them (:class:`FrameClock`)
→ :meth:`AthleteAnalyzer.feed_imu` (fusion, tilt, velocity, reps, sets) → the record
each event becomes (:mod:`sensorhub.bench.breakdown` times each of those parts). The
reference is imufusion's AHRS on the very same samples, called as
:class:`~sensorhub.analysis.orientation.OrientationTracker` calls it, in the same run:
how fast the machine is at that moment cancels out of the ratio.

Times are the calling thread's CPU time (``time.thread_time``), so another process
sharing the core does not count against us; each figure is the median of a few repeats.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import imufusion
import numpy as np
import numpy.typing as npt

from firmware_protocol import ImuDataFrame, decode, samples_per_frame
from firmware_protocol.frames import DATA_HEADER, SensorKind
from firmware_protocol.gatt import PREFERRED_ATT_MTU
from firmware_protocol.virtual.imu_model import ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.analysis.athlete import AthleteAnalyzer, Role
from sensorhub.analysis.orientation import FusionSettings, G
from sensorhub.bench.breakdown import Breakdown, median_breakdown, run_breakdown
from sensorhub.ble.accounting import StreamAccounting
from sensorhub.ble.clock import SensorClock
from sensorhub.records import WallClock, event_record

__all__ = [
    "FrameClock",
    "FrameStream",
    "PipelineResult",
    "decode_imu",
    "make_frames",
    "measure_pipeline",
    "run_pipeline",
]

FloatArray = npt.NDArray[np.float64]

RATE_HZ: Final = 200
ACCEL_RANGE_G: Final = 16
GYRO_RANGE_DPS: Final = 2000
NEUTRAL_WINDOW_S: Final = (0.5, 2.5)
"""Where the hip-thrust scenarios hold the neutral bridge (their calibration opens them)."""
_SAMPLE_BYTES: Final = ImuDataFrame.columns * ImuDataFrame.sample_dtype.itemsize
COALESCED_FRAMES: Final = 10
"""Frames per call for the figure that separates per-call from per-sample costs."""


@dataclass(frozen=True, slots=True)
class FrameStream:
    """Data frames of a bar and a pelvis IMU, interleaved in the order they would arrive.

    ``frames`` holds (role, frame bytes, hub time of its first sample in s); all frames
    are ``ImuDataFrame`` bytes of :data:`RATE_HZ` samples.
    """

    frames: list[tuple[Role, bytes, float]]
    samples: int
    duration_s: float
    scenario: str


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """Samples per second of CPU time (one core), medians over the repeats."""

    pipeline_samples_per_s: float
    imufusion_samples_per_s: float
    """imufusion's update alone, as the orientation code calls it, on the same samples."""
    imufusion_with_outputs_samples_per_s: float
    """imufusion's update plus reading the quaternion and earth acceleration back."""
    coalesced_samples_per_s: float
    """The pipeline handed :data:`COALESCED_FRAMES` frames of a sensor per call."""
    per_frame_us: float
    """CPU time per frame, one frame per call (µs)."""
    per_call_us: float
    """CPU time per call into the analysis, whatever its size (µs)."""
    per_sample_us: float
    """CPU time per sample on top of that (µs)."""
    samples_per_frame: float
    samples: int
    frames: int
    repeats: int
    events: dict[str, int]
    scenario: str
    breakdown: Breakdown
    """CPU time per frame of each part (:mod:`~sensorhub.bench.breakdown`), medians."""

    @property
    def ratio(self) -> float:
        """Pipeline speed over imufusion-alone speed (1.0: as fast as the AHRS alone)."""
        return self.pipeline_samples_per_s / self.imufusion_samples_per_s

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-able object."""
        return {
            "pipeline_samples_per_s": round(self.pipeline_samples_per_s),
            "imufusion_samples_per_s": round(self.imufusion_samples_per_s),
            "imufusion_with_outputs_samples_per_s": round(
                self.imufusion_with_outputs_samples_per_s
            ),
            "pipeline_to_imufusion_ratio": round(self.ratio, 3),
            "coalesced_samples_per_s": round(self.coalesced_samples_per_s),
            "coalesced_frames_per_call": COALESCED_FRAMES,
            "per_frame_us": round(self.per_frame_us, 1),
            "per_call_us": round(self.per_call_us, 1),
            "per_sample_us": round(self.per_sample_us, 2),
            "samples_per_frame": round(self.samples_per_frame, 1),
            "samples": self.samples,
            "frames": self.frames,
            "repeats": self.repeats,
            "events": self.events,
            "scenario": self.scenario,
            "breakdown": {part: round(us, 1) for part, us in self.breakdown.us_per_frame.items()},
            "breakdown_calls_per_frame": {
                part: round(calls, 3) for part, calls in self.breakdown.calls_per_frame.items()
            },
        }


def make_frames(
    scenario: Scenario, *, duration_s: float | None = None, seed: int = 1
) -> FrameStream:
    """Frames a bar and a pelvis sensor would send playing ``scenario`` (its first seconds).

    The batch size is what the firmware sends at the ATT MTU the hub asks for, so the
    per-frame costs weigh as they do on the air.
    """
    trajectory = Trajectory.from_scenario(scenario, seed)
    span = trajectory.duration_s if duration_s is None else min(duration_s, trajectory.duration_s)
    n = int(span * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    per_frame = samples_per_frame(SensorKind.IMU, PREFERRED_ATT_MTU)
    interval_us = 1_000_000 // RATE_HZ
    rng = np.random.default_rng([seed, 0xBE7C])
    frames: list[tuple[Role, bytes, float]] = []
    for role in ("bar", "pelvis"):
        if role not in trajectory.bodies:
            continue
        simulator = ImuSimulator(trajectory, role, mounting=random_mounting(rng), rng=rng)
        accel, gyro = simulator.measure(
            t, accel_range_g=ACCEL_RANGE_G, gyro_range_dps=GYRO_RANGE_DPS, odr_hz=RATE_HZ
        )
        counts = np.hstack([accel, gyro]).astype("<i2")
        for seq, start in enumerate(range(0, n, per_frame)):
            frame = ImuDataFrame(
                seq=seq & 0xFFFF,
                timestamp_us=start * interval_us,
                interval_us=interval_us,
                samples=counts[start : start + per_frame],
                accel_range_g=ACCEL_RANGE_G,
                gyro_range_dps=GYRO_RANGE_DPS,
            )
            frames.append((role, bytes(frame), float(t[start])))
    # Arrival order: a frame is sent once its last sample is taken.
    frames.sort(key=lambda item: item[2] + _sample_count(item[1]) / RATE_HZ)
    samples = sum(_sample_count(data) for _, data, _ in frames)
    return FrameStream(frames, samples, span, scenario.name)


def _sample_count(data: bytes) -> int:
    """Samples in an IMU data frame, from its length."""
    return (len(data) - DATA_HEADER.size) // _SAMPLE_BYTES


def decode_imu(data: bytes) -> tuple[ImuDataFrame, FloatArray, FloatArray]:
    """An IMU data frame's bytes as the link decodes them: the frame, accel m/s², gyro rad/s."""
    frame = decode(data)
    assert isinstance(frame, ImuDataFrame)
    return frame, frame.accel, frame.gyro


class FrameClock:
    """One sensor's frames to per-sample hub times, as :class:`~sensorhub.ble.link.SensorLink`
    maps them: loss accounting, the u32 clock unwrapped, the clock fit's line.

    The fit is synced once, at sensor time 0 = hub time 0, so the hub times are the
    sensor's; what the link pays per frame is the same.
    """

    def __init__(self) -> None:
        self.accounting = StreamAccounting()
        self.clock = SensorClock()
        self.clock.add_sync(0.0, 0.0, 0)

    def hub_times(self, frame: ImuDataFrame) -> FloatArray:
        """Hub time of each sample of ``frame`` (n,) s."""
        self.accounting.observe(frame.seq, frame.timestamp_us, frame.interval_us, frame.count)
        start_us = self.clock.unwrap(frame.timestamp_us)
        return self.clock.to_hub(start_us + frame.sample_offsets_us)


def run_pipeline(stream: FrameStream, *, frames_per_call: int = 1) -> dict[str, int]:
    """Push every frame through decode, the analysis and the records; count events by type.

    ``frames_per_call`` > 1 hands the analysis that many frames of a sensor at once (as a
    hub that fell behind could): it shows how much of the cost is per call, not per sample.
    """
    analyzer = AthleteAnalyzer(
        "bench",
        "hip_thrust",
        {"bar": float(RATE_HZ), "pelvis": float(RATE_HZ)},
        neutral_window=NEUTRAL_WINDOW_S,
    )
    clock = WallClock(0.0)
    counts: dict[str, int] = {}
    clocks: dict[Role, FrameClock] = {"bar": FrameClock(), "pelvis": FrameClock()}
    waiting: dict[Role, list[tuple[FloatArray, FloatArray, FloatArray]]] = {
        "bar": [],
        "pelvis": [],
    }
    for role, data, _ in stream.frames:
        frame, accel, gyro = decode_imu(data)
        held = waiting[role]
        held.append((clocks[role].hub_times(frame), accel, gyro))
        if len(held) < frames_per_call:
            continue
        waiting[role] = []
        if len(held) == 1:
            t, accel, gyro = held[0]
        else:
            t, accel, gyro = (np.concatenate(columns) for columns in zip(*held, strict=True))
        for event in analyzer.feed_imu(role, t, accel, gyro):
            kind = event_record(event, clock)["type"]
            counts[kind] = counts.get(kind, 0) + 1
    for event in analyzer.flush():
        kind = event_record(event, clock)["type"]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _imu_arrays(
    stream: FrameStream,
) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Per sensor, its samples as imufusion takes them: gyroscope °/s and accelerometer g."""
    by_role: dict[str, list[ImuDataFrame]] = {}
    for role, data, _ in stream.frames:
        frame = decode(data)
        assert isinstance(frame, ImuDataFrame)
        by_role.setdefault(role, []).append(frame)
    arrays = []
    for frames in by_role.values():
        accel = np.concatenate([f.accel for f in frames]) / G
        gyro = np.concatenate([f.gyro for f in frames]) * (180.0 / math.pi)
        arrays.append((np.ascontiguousarray(gyro), np.ascontiguousarray(accel)))
    return arrays


def _new_ahrs() -> imufusion.Ahrs:
    settings = FusionSettings()
    ahrs = imufusion.Ahrs()
    ahrs.set_settings(
        imufusion.AhrsSettings(
            sample_rate=float(RATE_HZ),
            convention=imufusion.CONVENTION_ENU,
            gain=settings.gain,
            gyroscope_range=settings.gyroscope_range_dps,
            acceleration_rejection=settings.acceleration_rejection_deg,
            magnetic_rejection=0.0,
            rejection_timeout=round(settings.rejection_timeout_s * RATE_HZ),
        )
    )
    ahrs.set_sample_period(1.0 / RATE_HZ)
    return ahrs


def run_imufusion(
    arrays: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    *,
    outputs: bool = False,
) -> None:
    """imufusion's AHRS over every sample, one update per sample as its API takes them."""
    for gyro, accel in arrays:
        ahrs = _new_ahrs()
        update = ahrs.update_no_magnetometer
        if outputs:
            for i in range(len(gyro)):
                update(gyro[i], accel[i])
                ahrs.get_quaternion()
                ahrs.get_earth_acceleration()
        else:
            for i in range(len(gyro)):
                update(gyro[i], accel[i])


def _cpu_seconds(work: Callable[[], object]) -> float:
    start = time.thread_time()
    work()
    return time.thread_time() - start


def measure_pipeline(stream: FrameStream, *, repeats: int = 5) -> PipelineResult:
    """Time the pipeline, imufusion alone and each part on ``stream``, interleaved; medians."""
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}: give at least 1")
    arrays = _imu_arrays(stream)
    events = run_pipeline(stream)  # warm-up: imports, caches, first-call costs
    run_imufusion(arrays)
    pipeline, alone, with_outputs, coalesced = [], [], [], []
    parts: list[Breakdown] = []
    for _ in range(repeats):
        # Interleaved, so a slow moment of the machine hits both sides alike.
        pipeline.append(_cpu_seconds(lambda: run_pipeline(stream)))
        alone.append(_cpu_seconds(lambda: run_imufusion(arrays)))
        with_outputs.append(_cpu_seconds(lambda: run_imufusion(arrays, outputs=True)))
        coalesced.append(
            _cpu_seconds(lambda: run_pipeline(stream, frames_per_call=COALESCED_FRAMES))
        )
        parts.append(run_breakdown(lambda: run_pipeline(stream), len(stream.frames)))
    n = stream.samples
    per_frame = n / len(stream.frames)
    # Cost per call = fixed + per sample: two batch sizes give both.
    frame_s = statistics.median(pipeline) / len(stream.frames)
    big_s = statistics.median(coalesced) / (len(stream.frames) / COALESCED_FRAMES)
    per_sample_s = max(0.0, (big_s - frame_s) / (per_frame * (COALESCED_FRAMES - 1)))
    return PipelineResult(
        pipeline_samples_per_s=n / statistics.median(pipeline),
        imufusion_samples_per_s=n / statistics.median(alone),
        imufusion_with_outputs_samples_per_s=n / statistics.median(with_outputs),
        coalesced_samples_per_s=n / statistics.median(coalesced),
        per_frame_us=frame_s * 1e6,
        per_call_us=max(0.0, frame_s - per_sample_s * per_frame) * 1e6,
        per_sample_us=per_sample_s * 1e6,
        samples_per_frame=per_frame,
        samples=n,
        frames=len(stream.frames),
        repeats=repeats,
        events=dict(sorted(events.items())),
        scenario=stream.scenario,
        breakdown=median_breakdown(parts),
    )
