"""Accuracy, measured: a randomised corpus from the sensor models, run through the analysis.

For every exercise, random scenarios (tempo, ROM, lockout holds, rest-pause, partial
reps, anterior-tip sets, disturbances) are played through the motion model, measured by
IMUs clipped on at random angles (and, on the bar, by a bar-velocity sensor), quantised
as the firmware sends them, and fed to the streaming analysis in batches of a BLE
frame's size. The figures compare its output with the ground truth. The seeds are the
evaluation's own, never the tests'.

Two corpora (``corpus=``, ``sensorhub evaluate --corpus``):

``real`` (the default) is as untidy as real sessions. Every scenario has its own lifter
(:class:`~firmware_protocol.virtual.physiology.Lifter`, calm to shaky: tremor and sway in
every hold, the bar ringing where the plates meet the floor or the rack) and 40 % of
squat and deadlift sets are touch-and-go. Its sensors are one of four parts (BMI270,
LSM6DSO, MPU-6050, ICM-42688-P) at a rate drawn from 12.5-200 Hz (the part's own
rates; shares in ``RATE_SHARES_HZ``), at ranges people set (the MPU-6050 often left at
its power-on ±2 g / ±250 °/s), over a BLE link that loses notifications in bursts
(:class:`~firmware_protocol.virtual.delivery.DeliveryModel`). Recordings are stamped on
arrival (jitter, repeated rows) and made even by :func:`sensorhub.analysis.recording.
regularise`, as ``sensorhub analyze`` does; a live session (``live=True``) has the sensor's
own stamps instead, losses left as gaps, at 50 Hz or more (the live analysis's least).

``clean`` is the corpus as it was first built, kept for comparison: a statue of a lifter,
only paused sets, a BMI270 at ±16 g / ±2000 °/s, 200 Hz, every sample delivered.

``rate_hz`` fixes the IMU rate of every scenario (the part then runs at it whatever its
data sheet lists); without it each corpus uses its own.

By default the analysis sees each recording from its start, the opening bridge
included, and tilt measures the neutral pose on that bridge (a neutral window, as
``sensorhub analyze`` does). ``live=True`` takes the path of a live session instead:
the session starts at a random moment between the bridge's end and the first rep, and
the pelvis's neutral is what pairing stored (gravity over the bridge).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from firmware_protocol.frames import accel_scale, gyro_scale
from firmware_protocol.virtual.delivery import DeliveryModel
from firmware_protocol.virtual.imu_model import (
    BMI270,
    ICM42688P,
    LSM6DSO,
    MPU6050,
    BarSensorSimulator,
    ImuSimulator,
    ImuSpec,
    random_mounting,
)
from firmware_protocol.virtual.motion import Trajectory
from firmware_protocol.virtual.physiology import Lifter
from firmware_protocol.virtual.scenario import EXERCISES, Scenario
from sensorhub.analysis.athlete import AthleteAnalyzer, Role
from sensorhub.analysis.events import RepCompleted
from sensorhub.analysis.recording import Recording, regularise
from sensorhub.analysis.reps import Rep
from sensorhub.analysis.scoring import ExerciseScore, match_reps
from sensorhub.analysis.tilt import TiltCalibration

FloatArray = npt.NDArray[np.float64]
Corpus = Literal["real", "clean"]
CORPORA: Final[tuple[Corpus, ...]] = get_args(Corpus)
EVALUATION_SEED: Final = 7_300_001
"""Base seed of the evaluation corpus; tests use small seeds, never this range."""
ACCEL_RANGE_G: Final = 16
GYRO_RANGE_DPS: Final = 2000
CLEAN_RATE_HZ: Final = 200.0
FRAME_SAMPLES: Final = 10
TOUCH_AND_GO_SHARE: Final = 0.4
"""Share of squat and deadlift sets played touch-and-go in the real corpus."""
PART_SHARES: Final[tuple[tuple[ImuSpec, float], ...]] = (
    (BMI270, 0.3),
    (LSM6DSO, 0.25),
    (ICM42688P, 0.25),
    (MPU6050, 0.2),
)
RATE_SHARES_HZ: Final = ((12.5, 0.1), (25.0, 0.15), (50.0, 0.25), (100.0, 0.3), (200.0, 0.2))
"""The real corpus's rates (each snapped to the part's nearest own rate up to 208 Hz)."""
LIVE_MIN_RATE_HZ: Final = 50.0
"""Live sessions run at least this fast: the live analysis (tilt) takes 50 Hz and up."""
_LIVE_STREAM = 7  # second seed word of the live session's start


@dataclass(frozen=True, slots=True)
class Capture:
    """How one scenario is measured: the IMU part, its rate and ranges, and the BLE link."""

    part: ImuSpec
    rate_hz: float
    accel_range_g: int
    gyro_range_dps: int
    link: DeliveryModel

    @classmethod
    def random(cls, rng: np.random.Generator) -> Capture:
        """A part, a rate, ranges and a link as people use them (module docstring)."""
        parts, weights = zip(*PART_SHARES, strict=True)
        part = parts[int(rng.choice(len(parts), p=np.array(weights)))]
        rates, shares = zip(*RATE_SHARES_HZ, strict=True)
        wanted = rates[int(rng.choice(len(rates), p=np.array(shares)))]
        own = np.array([r for r in part.odr_hz if r <= 208.0])
        rate = float(own[np.argmin(np.abs(np.log(own / wanted)))])
        if part is MPU6050 and rng.random() < 0.5:
            accel, gyro = 2, 250  # left at its power-on ranges
        else:
            accel = int(rng.choice([4, 8, 16]))
            gyro = int(rng.choice([500, 1000, 2000]))
        return cls(part, rate, accel, gyro, DeliveryModel.random(rate, rng, stamps="arrival"))


CLEAN_CAPTURE: Final = Capture(
    BMI270, CLEAN_RATE_HZ, ACCEL_RANGE_G, GYRO_RANGE_DPS, DeliveryModel(CLEAN_RATE_HZ)
)


@dataclass(frozen=True, slots=True)
class CorpusItem:
    """One scenario of the corpus; without a capture and lifter, the clean corpus's."""

    exercise: str
    scenario: Scenario
    seed: int
    lifter: Lifter | None = None
    capture: Capture | None = None


def corpus(
    sets_per_exercise: int, seed: int = EVALUATION_SEED, *, kind: Corpus = "real"
) -> list[CorpusItem]:
    """Random scenarios until each exercise has at least ``sets_per_exercise`` sets."""
    if kind not in CORPORA:
        raise ValueError(f"corpus {kind!r} unknown; corpora: {', '.join(CORPORA)}")
    real = kind == "real"
    items: list[CorpusItem] = []
    for number, exercise in enumerate(EXERCISES):
        rng = np.random.default_rng([seed, number])
        sets = 0
        while sets < sets_per_exercise:
            wanted = int(min(4, max(1, sets_per_exercise - sets)))
            scenario = Scenario.random(
                exercise,
                rng,
                sets=int(rng.integers(1, wanted + 1)),
                touch_and_go=TOUCH_AND_GO_SHARE if real else 0.0,
            )
            item_seed = int(rng.integers(0, 2**31))
            item = CorpusItem(exercise, scenario, item_seed)
            if real:
                people = np.random.default_rng([item_seed, 3])
                item = replace(item, lifter=Lifter.random(people), capture=Capture.random(people))
            items.append(item)
            sets += len(scenario.sets)
    return items


@dataclass(frozen=True, slots=True)
class _Stream:
    """One sensor's samples as the analysis gets them, SI units, and their rate."""

    t: FloatArray
    accel: FloatArray
    gyro: FloatArray
    rate_hz: float


def _imu(
    trajectory: Trajectory,
    body: str,
    capture: Capture,
    rate: float,
    rng: np.random.Generator,
    *,
    live: bool,
) -> _Stream:
    simulator = ImuSimulator(
        trajectory,
        body,  # type: ignore[arg-type]
        spec=capture.part,
        mounting=random_mounting(rng),
        rng=rng,
    )
    if capture is CLEAN_CAPTURE:  # every sample, on the grid the clean corpus always had
        t = np.arange(0.0, trajectory.duration_s, 1.0 / rate)
        index = np.arange(t.size)
        t_sampled = t
    else:
        link = replace(capture.link, rate_hz=rate)
        delivery = (link.as_sensor_stamped if live else link).deliver(trajectory.duration_s, rng)
        t, index, t_sampled = delivery.t, delivery.index, delivery.t_sampled
    accel, gyro = simulator.measure(
        t_sampled,
        accel_range_g=capture.accel_range_g,
        gyro_range_dps=capture.gyro_range_dps,
        odr_hz=rate,
    )
    accel_si = accel[index].astype(np.float64)
    accel_si *= accel_scale(capture.accel_range_g)
    gyro_si = gyro[index].astype(np.float64)
    gyro_si *= gyro_scale(capture.gyro_range_dps)
    if live or capture is CLEAN_CAPTURE:
        return _Stream(t, accel_si, gyro_si, rate)
    # A recording stamped on arrival is made even first, as ``sensorhub analyze`` does; a
    # link gap long enough to cut it leaves a jump in time, as a live stream has.
    segments = regularise(Recording(t, accel_si, gyro_si))
    return _Stream(
        np.concatenate([s.t for s in segments]),
        np.concatenate([s.accel for s in segments]),
        np.concatenate([s.gyro for s in segments]),
        segments[0].rate_hz,
    )


def _feed(
    analyzer: AthleteAnalyzer, streams: dict[Role, _Stream], begin_s: float
) -> list[RepCompleted]:
    """Feed every stream from ``begin_s`` in time order, in batches of a BLE frame's size
    (of the first stream: the others' batches end at the same moments)."""
    completed: list[RepCompleted] = []
    first = next(iter(streams.values()))
    start = int(np.searchsorted(first.t, begin_s))
    edges = first.t[start::FRAME_SAMPLES]
    cuts = {role: np.r_[np.searchsorted(s.t, edges), len(s.t)] for role, s in streams.items()}
    for role, stream in streams.items():  # each stream from ``begin_s`` (or its first sample)
        cuts[role][0] = np.searchsorted(stream.t, begin_s) if begin_s > 0 else 0
    for k in range(len(edges)):
        for role, stream in streams.items():
            window = slice(cuts[role][k], cuts[role][k + 1])
            events = analyzer.feed_imu(
                role, stream.t[window], stream.accel[window], stream.gyro[window]
            )
            completed += [e for e in events if isinstance(e, RepCompleted)]
    completed += [e for e in analyzer.flush() if isinstance(e, RepCompleted)]
    return completed


def item_rate(item: CorpusItem, rate_hz: float | None = None, live: bool = False) -> float:
    """The IMU rate ``item`` is measured at: ``rate_hz`` if given, else its capture's (in
    a live session at least :data:`LIVE_MIN_RATE_HZ`)."""
    if rate_hz is not None:
        return rate_hz
    rate = (item.capture or CLEAN_CAPTURE).rate_hz
    return max(rate, LIVE_MIN_RATE_HZ) if live else rate


def score_item(item: CorpusItem, rate_hz: float | None = None, live: bool = False) -> ExerciseScore:
    """Play one scenario through the models and the analysis; return its score.

    ``rate_hz`` fixes the IMU rate; without it the item's capture sets it.
    """
    trajectory = Trajectory.from_scenario(item.scenario, item.seed, lifter=item.lifter)
    rng = np.random.default_rng([item.seed, 99])
    capture = item.capture or CLEAN_CAPTURE
    rate = item_rate(item, rate_hz, live)
    streams: dict[Role, _Stream] = {
        body: _imu(trajectory, body, capture, rate, rng, live=live) for body in trajectory.bodies
    }
    bridge = item.scenario.calibration_s
    neutral = (0.0, bridge) if "pelvis" in streams else None
    stored: TiltCalibration | None = None
    begin_s = 0.0
    if live:
        reps = trajectory.truth.reps
        first = reps[0].t_start if reps else trajectory.duration_s
        session = np.random.default_rng([item.seed, _LIVE_STREAM])  # the streams' draws stay
        t = next(iter(streams.values())).t
        begin = int(np.searchsorted(t, session.uniform(bridge, max(bridge, first - 0.5))))
        begin_s = float(t[min(begin, len(t) - 1)])
    if live and "pelvis" in streams:
        pelvis = streams["pelvis"]
        hold = (pelvis.t >= 0.5) & (pelvis.t <= bridge - 0.5)
        stored = TiltCalibration.from_gravity(pelvis.accel[hold].mean(axis=0))
        neutral = None
    analyzer = AthleteAnalyzer(
        "eval",
        item.exercise,
        rates={role: stream.rate_hz for role, stream in streams.items()},
        neutral_window=neutral,
        tilt_calibration=stored,
        keep_tilt_trace=True,
    )
    completed = _feed(analyzer, streams, begin_s)

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
        score.add_transducer_reps(
            _transducer_reps(item, trajectory, capture, rate, rng), truth.reps
        )
    return score


def _transducer_reps(
    item: CorpusItem,
    trajectory: Trajectory,
    capture: Capture,
    rate: float,
    rng: np.random.Generator,
) -> list[Rep]:
    """The bar-velocity sensor's reps: on the IMU's grid in the clean corpus; in the real
    one at the IMU's rate but at least 50 Hz (its slowest), on its own clock and link."""
    if capture is CLEAN_CAPTURE:
        t = np.arange(0.0, trajectory.duration_s, 1.0 / rate)
        index = np.arange(t.size)
    else:
        rate = max(rate, 50.0)
        link = replace(capture.link, rate_hz=rate).as_sensor_stamped
        delivery = link.deliver(trajectory.duration_s, rng)
        t, index = delivery.t_sampled, delivery.index
    position, velocity = BarSensorSimulator(trajectory, rng=rng).measure(t)
    t, position, velocity = t[index], position[index], velocity[index]
    transducer = AthleteAnalyzer("eval", item.exercise, rates={"bar_velocity": rate})
    for start in range(0, len(t), FRAME_SAMPLES):
        window = slice(start, start + FRAME_SAMPLES)
        transducer.feed_transducer(t[window], position[window], velocity[window])
    transducer.flush()
    return list(transducer.reps)


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
    rate_hz: float | None = None,
    live: bool = False,
    corpus_kind: Corpus = "real",
    workers: int = 2,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Run the whole evaluation; return the figures keyed by exercise.

    ``rate_hz`` fixes the IMU rate (default: the corpus's own); ``corpus_kind`` chooses
    the corpus (module docstring).
    """
    if rate_hz is not None and not 1.0 <= rate_hz <= 10_000.0:
        raise ValueError(f"rate_hz = {rate_hz!r}: allowed 1..10000 Hz (or None: the corpus's)")
    items = corpus(sets_per_exercise, seed, kind=corpus_kind)
    started = time.monotonic()
    by_exercise: dict[str, list[ExerciseScore]] = {exercise: [] for exercise in EXERCISES}
    scored = zip(items, _scores(items, rate_hz, live, workers), strict=True)
    for done, (item, score) in enumerate(scored, start=1):
        by_exercise[item.exercise].append(score)
        progress(f"[{done}/{len(items)}] {item.exercise} ({len(item.scenario.sets)} sets)")
    figures: dict[str, Any] = {
        exercise: merge(scores).figures() for exercise, scores in by_exercise.items()
    }
    captures = [item.capture or CLEAN_CAPTURE for item in items]
    rates = Counter(item_rate(item, rate_hz, live) for item in items)
    figures["_meta"] = {
        "seed": seed,
        "sets_per_exercise": sets_per_exercise,
        "corpus": corpus_kind,
        "rate_hz": rate_hz,
        "live": live,
        "scenarios": len(items),
        "scenarios_by_rate_hz": {f"{r:g}": n for r, n in sorted(rates.items())},
        "scenarios_by_part": dict(Counter(c.part.name for c in captures)),
        "seconds": round(time.monotonic() - started, 1),
    }
    return figures


def _scores(
    items: list[CorpusItem], rate_hz: float | None, live: bool, workers: int
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
