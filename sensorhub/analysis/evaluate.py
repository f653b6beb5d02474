"""Accuracy, measured: a randomised corpus from the sensor models, run through the analysis.

For every exercise, random scenarios (tempo, ROM, lockout holds, rest-pause, partial
reps, anterior-tip sets, disturbances) are played through the motion model, measured by
IMUs clipped on at random angles with datasheet-grade errors (and, on the bar, by a
bar-velocity sensor), quantised as the firmware sends them, and fed to the streaming
analysis in batches of a BLE frame's size. The figures compare its output with the
ground truth. The seeds are the evaluation's own, never the tests'.

By default the analysis sees each recording from its start, the opening bridge
included, and tilt measures the neutral pose on that bridge (a neutral window, as
``sensorhub analyze`` does). ``live=True`` takes the path of a live session instead:
the session starts at a random moment between the bridge's end and the first rep, and
the pelvis's neutral is what pairing stored (gravity over the bridge).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from firmware_protocol.frames import accel_scale, gyro_scale
from firmware_protocol.virtual.imu_model import BarSensorSimulator, ImuSimulator, random_mounting
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.scenario import EXERCISES, Scenario
from sensorhub.analysis.athlete import AthleteAnalyzer, Role
from sensorhub.analysis.events import RepCompleted
from sensorhub.analysis.scoring import ExerciseScore, match_reps
from sensorhub.analysis.tilt import TiltCalibration

FloatArray = npt.NDArray[np.float64]
EVALUATION_SEED: Final = 7_300_001
"""Base seed of the evaluation corpus; tests use small seeds, never this range."""
ACCEL_RANGE_G: Final = 16
GYRO_RANGE_DPS: Final = 2000
FRAME_SAMPLES: Final = 10


@dataclass(frozen=True, slots=True)
class CorpusItem:
    """One scenario of the corpus."""

    exercise: str
    scenario: Scenario
    seed: int


def corpus(sets_per_exercise: int, seed: int = EVALUATION_SEED) -> list[CorpusItem]:
    """Random scenarios until each exercise has at least ``sets_per_exercise`` sets."""
    items: list[CorpusItem] = []
    for number, exercise in enumerate(EXERCISES):
        rng = np.random.default_rng([seed, number])
        sets = 0
        while sets < sets_per_exercise:
            wanted = int(min(4, max(1, sets_per_exercise - sets)))
            scenario = Scenario.random(exercise, rng, sets=int(rng.integers(1, wanted + 1)))
            items.append(CorpusItem(exercise, scenario, int(rng.integers(0, 2**31))))
            sets += len(scenario.sets)
    return items


def _imu(
    trajectory: Trajectory, body: str, t: FloatArray, rate: float, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    simulator = ImuSimulator(trajectory, body, mounting=random_mounting(rng), rng=rng)  # type: ignore[arg-type]
    accel, gyro = simulator.measure(
        t, accel_range_g=ACCEL_RANGE_G, gyro_range_dps=GYRO_RANGE_DPS, odr_hz=rate
    )
    accel_si = accel.astype(np.float64)
    accel_si *= accel_scale(ACCEL_RANGE_G)
    gyro_si = gyro.astype(np.float64)
    gyro_si *= gyro_scale(GYRO_RANGE_DPS)
    return accel_si, gyro_si


def score_item(item: CorpusItem, rate_hz: float = 200.0, live: bool = False) -> ExerciseScore:
    """Play one scenario through the models and the analysis; return its score."""
    trajectory = Trajectory.from_scenario(item.scenario, item.seed)
    rng = np.random.default_rng([item.seed, 99])
    t = np.arange(0.0, trajectory.duration_s, 1.0 / rate_hz)
    streams: dict[Role, tuple[FloatArray, FloatArray]] = {
        body: _imu(trajectory, body, t, rate_hz, rng) for body in trajectory.bodies
    }
    bridge = item.scenario.calibration_s
    neutral = (0.0, bridge) if "pelvis" in streams else None
    stored: TiltCalibration | None = None
    begin = 0
    if live:
        reps = trajectory.truth.reps
        first = reps[0].t_start if reps else trajectory.duration_s
        session = np.random.default_rng([item.seed, 7])  # the streams' draws stay the same
        begin = int(np.searchsorted(t, session.uniform(bridge, max(bridge, first - 0.5))))
    if live and "pelvis" in streams:
        hold = (t >= 0.5) & (t <= bridge - 0.5)
        stored = TiltCalibration.from_gravity(streams["pelvis"][0][hold].mean(axis=0))
        neutral = None
    analyzer = AthleteAnalyzer(
        "eval",
        item.exercise,
        rates=dict.fromkeys(streams, rate_hz),
        neutral_window=neutral,
        tilt_calibration=stored,
        keep_tilt_trace=True,
    )
    completed: list[RepCompleted] = []
    for start in range(begin, len(t), FRAME_SAMPLES):
        window = slice(start, start + FRAME_SAMPLES)
        for role, (accel, gyro) in streams.items():
            events = analyzer.feed_imu(role, t[window], accel[window], gyro[window])
            completed += [e for e in events if isinstance(e, RepCompleted)]
    completed += [e for e in analyzer.flush() if isinstance(e, RepCompleted)]

    truth = trajectory.truth
    score = ExerciseScore()
    score.add_reps(analyzer.reps, truth.reps)
    score.add_sets(
        [(s.t_start, s.t_end, s.rep_count) for s in analyzer.sets],
        [(s.t_start, s.t_end, s.reps) for s in truth.sets],
    )
    if "pelvis" in streams:
        _score_tilt(score, analyzer, trajectory, completed)
    if "bar" in streams:
        position, velocity = BarSensorSimulator(trajectory, rng=rng).measure(t)
        transducer = AthleteAnalyzer("eval", item.exercise, rates={"bar_velocity": rate_hz})
        for start in range(0, len(t), FRAME_SAMPLES):
            window = slice(start, start + FRAME_SAMPLES)
            transducer.feed_transducer(t[window], position[window], velocity[window])
        transducer.flush()
        score.add_transducer_reps(transducer.reps, truth.reps)
    return score


def _score_tilt(
    score: ExerciseScore,
    analyzer: AthleteAnalyzer,
    trajectory: Trajectory,
    completed: list[RepCompleted],
) -> None:
    tilt_t, tilt_deg = analyzer.tilt_trace()
    for rep in trajectory.truth.reps:
        inside = (tilt_t >= rep.t_start) & (tilt_t <= rep.t_end)
        estimate = tilt_deg[inside]
        known = np.isfinite(estimate)
        truth = trajectory.tilt_deg(tilt_t[inside][known])
        score.add_tilt(estimate[known] - truth)
    detected = [event.rep for event in completed]
    for i, j in match_reps(detected, trajectory.truth.reps):
        true = trajectory.truth.reps[j]
        if true.partial or true.tilt_verdict is None or detected[i].partial:
            continue
        tilt = completed[i].tilt
        score.add_verdict(tilt is not None and tilt.verdict == true.tilt_verdict)


def merge(scores: list[ExerciseScore]) -> ExerciseScore:
    """Add up the scores of many scenarios."""
    total = ExerciseScore()
    for score in scores:
        for name, value in vars(score).items():
            current = getattr(total, name)
            setattr(total, name, current + value)
    return total


def evaluate(
    sets_per_exercise: int,
    *,
    seed: int = EVALUATION_SEED,
    rate_hz: float = 200.0,
    live: bool = False,
    workers: int = 2,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Run the whole evaluation; return the figures keyed by exercise."""
    items = corpus(sets_per_exercise, seed)
    started = time.monotonic()
    by_exercise: dict[str, list[ExerciseScore]] = {exercise: [] for exercise in EXERCISES}
    scored = zip(items, _scores(items, rate_hz, live, workers), strict=True)
    for done, (item, score) in enumerate(scored, start=1):
        by_exercise[item.exercise].append(score)
        progress(f"[{done}/{len(items)}] {item.exercise} ({len(item.scenario.sets)} sets)")
    figures: dict[str, Any] = {
        exercise: merge(scores).figures() for exercise, scores in by_exercise.items()
    }
    figures["_meta"] = {
        "seed": seed,
        "sets_per_exercise": sets_per_exercise,
        "rate_hz": rate_hz,
        "live": live,
        "scenarios": len(items),
        "seconds": round(time.monotonic() - started, 1),
    }
    return figures


def _scores(
    items: list[CorpusItem], rate_hz: float, live: bool, workers: int
) -> Iterator[ExerciseScore]:
    if workers <= 1:
        yield from (score_item(item, rate_hz, live) for item in items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(score_item, items, [rate_hz] * len(items), [live] * len(items))


TARGETS: Final = {
    "exact_set_rate": (">=", 0.98),
    "rep_f1": (">=", 0.995),
    "mcv_rmse_mps": ("<=", 0.03),
    "transducer_mcv_rmse_mps": ("<=", 0.015),
    "tilt_rmse_deg": ("<=", 1.5),
}


def format_table(figures: dict[str, Any]) -> str:
    """The figures as a plain table for people, with the targets beside them."""
    columns = [
        *TARGETS,
        "rep_precision",
        "rep_recall",
        "mcv_bias_mps",
        "peak_velocity_rmse_mps",
        "rom_rmse_m",
        "tilt_verdict_accuracy",
    ]
    lines = [f"{'figure':<26}" + "".join(f"{e:>24}" for e in EXERCISES) + "   target"]
    for column in ["sets", *columns]:
        cells = []
        for exercise in EXERCISES:
            value = figures[exercise].get(column)
            cells.append(f"{'—' if value is None else value:>24}")
        target = TARGETS.get(column)
        suffix = f"   {target[0]} {target[1]}" if target else ""
        lines.append(f"{column:<26}" + "".join(cells) + suffix)
    return "\n".join(lines)
