"""Where a frame's CPU time goes in the pipeline: each part of the hot path, µs per frame.

Each repeat of the pipeline bench (:func:`~sensorhub.bench.pipeline.measure_pipeline`)
runs the pipeline once more over the same frames, one frame per call, with the
functions that make up each part wrapped in timers of the calling thread's CPU time. A
part's time is its own: a timed function called inside another (the AHRS inside the
tilt estimator, the stillness detector inside the velocity estimator) counts for
itself alone, so the parts add up to the whole run less the bench loop's own
bookkeeping. A timer costs about a microsecond per call; that cost, measured on an
empty function before each run, is taken out of every part, so the parts add up to
the plain run's time per frame (``per_frame_us``) to within a few per cent.

The parts (:data:`PARTS`, in the order a frame meets them):

- ``decode``: frame bytes to a frame and its samples in SI units
  (:func:`~sensorhub.bench.pipeline.decode_imu`);
- ``clock``: loss accounting and the sensor clock mapped to hub time
  (:class:`~sensorhub.bench.pipeline.FrameClock`);
- ``tilt.ahrs``, ``tilt.estimator``: the pelvis sensor's AHRS
  (:meth:`OrientationTracker.update`, imufusion called per sample, its inputs and
  outputs converted) and the rest of :meth:`TiltEstimator.update`;
- ``velocity.*``: the bar sensor's :class:`VerticalVelocityEstimator`, step by step:
  ``stillness`` (:class:`StillnessDetector`, less its gyroscope offset), ``gyro_offset``
  (:meth:`GyroOffset.add`), ``ahrs``, ``proxy_filter`` (the turnaround proxy's zero-phase
  filter, :func:`height_proxy`), ``swing_extremes`` and ``typical_swing`` (the proxy's
  extremes), ``turnarounds`` (the rest of finding the turns: decimation, the proxy's
  velocity, each turn placed at full rate), ``rests``, ``phases`` (deciding and
  integrating the phases, trimming the buffers), ``live`` (the live value) and
  ``estimator`` (the rest: checking and buffering input, handing blocks on);
- ``reps``: :class:`RepDetector`;
- ``analyzer``: :class:`AthleteAnalyzer`'s own work (tilt trace, live throttling, reps
  waiting for their tilt, sets, per-rep tilt);
- ``records``: each event turned into its record.
"""

from __future__ import annotations

import functools
import importlib
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["PARTS", "Breakdown", "median_breakdown", "run_breakdown"]

_PIPELINE: Final = "sensorhub.bench.pipeline"
_VELOCITY: Final = "sensorhub.analysis.velocity"
_AHRS: Final = "{}.ahrs"
"""The AHRS serves the tilt and the velocity estimators: it counts for the one calling it."""
_HOOKS: Final = (
    # (part, module, the function's name in it), found when a run starts: the pipeline
    # module times its runs with this one.
    ("decode", _PIPELINE, "decode_imu"),
    ("clock", _PIPELINE, "FrameClock.hub_times"),
    ("analyzer", "sensorhub.analysis.athlete", "AthleteAnalyzer.feed_imu"),
    ("analyzer", "sensorhub.analysis.athlete", "AthleteAnalyzer.flush"),
    ("tilt.estimator", "sensorhub.analysis.tilt", "TiltEstimator.update"),
    (_AHRS, "sensorhub.analysis.orientation", "OrientationTracker.update"),
    ("velocity.estimator", _VELOCITY, "VerticalVelocityEstimator.update"),
    ("velocity.estimator", _VELOCITY, "VerticalVelocityEstimator.flush"),
    ("velocity.stillness", "sensorhub.analysis.stillness", "StillnessDetector.push"),
    ("velocity.stillness", "sensorhub.analysis.stillness", "StillnessDetector.flush"),
    ("velocity.gyro_offset", "sensorhub.analysis.gyro_offset", "GyroOffset.add"),
    ("velocity.phases", _VELOCITY, "VerticalVelocityEstimator._finalise"),
    ("velocity.turnarounds", _VELOCITY, "VerticalVelocityEstimator._turns"),
    # The velocity module calls these by the names it imported them under.
    ("velocity.proxy_filter", _VELOCITY, "height_proxy"),
    ("velocity.swing_extremes", _VELOCITY, "swing_extremes"),
    ("velocity.typical_swing", _VELOCITY, "typical_swing"),
    ("velocity.rests", _VELOCITY, "VerticalVelocityEstimator._rests"),
    ("velocity.live", _VELOCITY, "VerticalVelocityEstimator.live"),
    ("reps", "sensorhub.analysis.reps", "RepDetector.update"),
    ("reps", "sensorhub.analysis.reps", "RepDetector.flush"),
    ("records", _PIPELINE, "event_record"),
)
PARTS: Final = (
    "decode",
    "clock",
    "tilt.ahrs",
    "tilt.estimator",
    "velocity.stillness",
    "velocity.gyro_offset",
    "velocity.ahrs",
    "velocity.proxy_filter",
    "velocity.swing_extremes",
    "velocity.typical_swing",
    "velocity.turnarounds",
    "velocity.rests",
    "velocity.phases",
    "velocity.live",
    "velocity.estimator",
    "reps",
    "analyzer",
    "records",
)
"""Every part the breakdown reports, in the order a frame meets them (module docstring)."""
_CALIBRATION_CALLS: Final = 20_000


@dataclass(frozen=True, slots=True)
class Breakdown:
    """CPU time per frame of each part (µs) and how often it was called per frame."""

    us_per_frame: dict[str, float]
    calls_per_frame: dict[str, float]

    @property
    def total_us(self) -> float:
        """The parts added up: µs per frame."""
        return sum(self.us_per_frame.values())


class _Timers:
    """Timers of the calling thread's CPU time; each timed call counts for itself alone."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = dict.fromkeys(PARTS, 0)
        self.calls: dict[str, int] = dict.fromkeys(PARTS, 0)
        self.inner_calls: dict[str, int] = dict.fromkeys(PARTS, 0)
        """Timed calls made from inside each part's own calls."""
        self._stack: list[list[Any]] = []  # [part, ns spent in timed calls inside, their count]

    def wrap(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, its time counted to ``part`` (``{}``: the calling part's group)."""
        stack, clock = self._stack, time.thread_time_ns
        ns, calls, inner_calls = self.ns, self.calls, self.inner_calls

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            name = part.format(stack[-1][0].partition(".")[0]) if stack else part
            entry: list[Any] = [name, 0, 0]
            stack.append(entry)
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = clock() - start
                stack.pop()
                ns[name] = ns.get(name, 0) + elapsed - entry[1]
                calls[name] = calls.get(name, 0) + 1
                inner_calls[name] = inner_calls.get(name, 0) + entry[2]
                if stack:
                    stack[-1][1] += elapsed
                    stack[-1][2] += 1

        return timed


def _timer_costs() -> tuple[float, float]:
    """What one timed call adds, ns: inside its own time, and to the part that calls it."""

    def nothing() -> None:
        return None

    def loop(call: Callable[[], None]) -> None:
        for _ in range(_CALIBRATION_CALLS):
            call()

    start = time.thread_time_ns()
    loop(nothing)
    plain = time.thread_time_ns() - start
    timers = _Timers()
    timers.wrap("records", lambda: loop(timers.wrap("decode", nothing)))()
    own = timers.ns["decode"] / _CALIBRATION_CALLS
    to_caller = max(0.0, (timers.ns["records"] - plain) / _CALIBRATION_CALLS)
    return own, to_caller


def _owner(module: str, path: str) -> tuple[object, str]:
    """The module or class that holds the function at ``path`` in ``module``, and its name."""
    owner: object = importlib.import_module(module)
    *outer, name = path.split(".")
    for attribute in outer:
        owner = getattr(owner, attribute)
    return owner, name


@contextmanager
def _timed(timers: _Timers) -> Iterator[None]:
    """Every hooked function timed by ``timers`` while the block runs; restored after."""
    originals = [
        (owner, name, vars(owner)[name])
        for owner, name in (_owner(module, path) for _, module, path in _HOOKS)
    ]
    try:
        for (part, _, _), (owner, name, function) in zip(_HOOKS, originals, strict=True):
            setattr(owner, name, timers.wrap(part, function))
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def run_breakdown(run: Callable[[], object], frames: int) -> Breakdown:
    """Each part's CPU time per frame in one timed ``run`` of the pipeline over ``frames``."""
    own, to_caller = _timer_costs()
    timers = _Timers()
    with _timed(timers):
        run()
    us = {
        part: max(
            0.0,
            timers.ns[part] - own * timers.calls[part] - to_caller * timers.inner_calls[part],
        )
        / frames
        / 1000.0
        for part in PARTS
    }
    calls = {part: timers.calls[part] / frames for part in PARTS}
    return Breakdown(us, calls)


def median_breakdown(runs: list[Breakdown]) -> Breakdown:
    """Part by part, the median of several runs."""
    return Breakdown(
        {part: statistics.median(r.us_per_frame[part] for r in runs) for part in PARTS},
        runs[0].calls_per_frame,
    )
