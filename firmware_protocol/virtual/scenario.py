"""Motion scenarios: what the virtual athlete does, set by set, and how it is validated.

A scenario is a plan, not a trajectory: it names the exercise, the sets (reps, load, tempo,
range of motion, pelvic-tilt behaviour, rest-pauses, partial reps) and whether the athlete
walks about and fidgets between sets. :class:`firmware_protocol.virtual.motion.Trajectory`
turns a plan into exact kinematics.

Scenarios come from TOML files (field names as in :class:`Scenario` and :class:`SetPlan`,
sets as an array of tables ``[[sets]]``, rest-pauses as inline tables), from the named presets
shipped in ``scenarios/NAME.toml``, or from :meth:`Scenario.random` for evaluation corpora.
Every value is checked on construction; a bad one raises :class:`ScenarioError` naming the
field (``sets[1].rom_m``) and the allowed range.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from firmware_protocol._errors import ScenarioError

__all__ = [
    "EXERCISES",
    "HIP_LEVER_M",
    "Exercise",
    "RestPause",
    "Scenario",
    "SetPlan",
    "TiltPlan",
]

Exercise = Literal["hip_thrust", "bodyweight_hip_thrust", "squat", "deadlift"]
EXERCISES: tuple[Exercise, ...] = get_args(Exercise)
TiltPlan = Literal["posterior_hold", "anterior_tip"]
_TILT_PLANS: tuple[TiltPlan, ...] = get_args(TiltPlan)

#: Distance from the shoulder blades (on the bench) to the sacrum, m. In a hip thrust the trunk
#: pivots about the bench edge, so the pelvis rotates by about asin(hip rise / lever).
HIP_LEVER_M = 0.55

# Allowed bar (or pelvis) travel per rep, m: wide enough for any athlete, narrow enough to
# catch unit mistakes (cm for m) and wrong exercises.
_ROM_RANGE: dict[Exercise, tuple[float, float]] = {
    "hip_thrust": (0.10, 0.40),
    "bodyweight_hip_thrust": (0.08, 0.40),
    "squat": (0.30, 0.80),
    "deadlift": (0.35, 0.75),
}
_LOAD_RANGE: dict[Exercise, tuple[float, float]] = {
    "hip_thrust": (15.0, 400.0),
    "bodyweight_hip_thrust": (0.0, 60.0),  # added weight (a band or a plate), no bar
    "squat": (15.0, 500.0),
    "deadlift": (15.0, 500.0),
}
_MCV_RANGE = (0.1, 2.0)  # implied first-rep mean concentric velocity rom/concentric_s, m/s
_TOUCH_AND_GO: tuple[Exercise, ...] = ("squat", "deadlift")
_TOUCH_AND_GO_PAUSE_S = 0.1  # the longest floor contact (or stop) of a touch-and-go rep

_PRESET_PACKAGE = "firmware_protocol.virtual"


@dataclass(frozen=True, slots=True)
class RestPause:
    """A pause inside a set: the athlete rests ``pause_s`` seconds after rep ``after_rep``.

    ``after_rep`` is 1-based. The athlete stays in the bottom position (hip thrust, deadlift:
    bar resting) or standing with the bar racked (squat) and then carries on.
    """

    after_rep: int
    pause_s: float


@dataclass(frozen=True, slots=True)
class SetPlan:
    """One set: how many reps, how heavy, how fast and how the pelvis behaves.

    Durations are seconds, distances metres, angles degrees. ``concentric_s`` is the first
    rep's concentric duration; later reps slow down so that the last full rep's mean
    concentric velocity is ``velocity_loss`` (a fraction) below the first's. Tilt fields apply
    to exercises with a pelvis sensor and are ignored otherwise.

    ``touch_and_go`` (squat and deadlift) plays the reps without a pause: the bar turns
    round at speed instead of coming to rest. The deadlift's plates touch the floor for
    ``bottom_pause_s`` (at most 0.1 s) and go; the squat has neither a bottom pause nor a
    hold at the top (both at most 0.1 s).
    """

    reps: int
    load_kg: float
    concentric_s: float
    eccentric_s: float
    lockout_hold_s: float
    bottom_pause_s: float
    rom_m: float
    tilt: TiltPlan = "posterior_hold"
    anterior_tip_deg: float = 0.0  # tip into anterior tilt at lockout, relative to a good rep
    rest_pauses: tuple[RestPause, ...] = ()
    partial_reps: tuple[int, ...] = ()  # 1-based rep numbers that stop short
    partial_fraction: float = 0.5  # a partial rep's ROM as a fraction of rom_m
    rest_before_s: float = 60.0  # rest before this set (first set: lead-in after calibration)
    posterior_hold_deg: float = 5.0  # posterior tuck held at lockout in a good rep
    anterior_tip_from_rep: int = 1  # in an anterior_tip set, the first rep that tips
    bottom_anterior_deg: float = 0.0  # pelvis sags into anterior tilt at the bottom
    velocity_loss: float = 0.15  # MCV loss, first to last full rep, fraction
    rep_jitter: float = 0.03  # relative rep-to-rep variability of tempo and ROM (1 sigma)
    touch_and_go: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-able builtins (the TOML layout)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "rest_pauses":
                value = [{"after_rep": p.after_rep, "pause_s": p.pause_s} for p in value]
            elif f.name == "partial_reps":
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole recording: calibration, then sets with rests, then a short still lead-out.

    Pelvis scenarios open with ``calibration_s`` seconds of stillness in the neutral lockout
    bridge (see :mod:`firmware_protocol.virtual.motion`). ``disturbances`` adds walking,
    setting up, re-racking and fidgeting inside the rests; they never overlap a rep.
    """

    name: str
    exercise: Exercise
    sets: tuple[SetPlan, ...]
    disturbances: bool
    calibration_s: float = 3.0
    lead_out_s: float = 3.0
    description: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def bodies(self) -> tuple[Literal["bar", "pelvis"], ...]:
        """Bodies that carry a sensor: bar, pelvis or both."""
        if self.exercise == "hip_thrust":
            return ("bar", "pelvis")
        if self.exercise == "bodyweight_hip_thrust":
            return ("pelvis",)
        return ("bar",)

    def to_dict(self) -> dict[str, Any]:
        """Return the scenario as JSON-able builtins; :meth:`from_dict` reverses it."""
        return {
            "name": self.name,
            "exercise": self.exercise,
            "disturbances": self.disturbances,
            "calibration_s": self.calibration_s,
            "lead_out_s": self.lead_out_s,
            "description": self.description,
            "sets": [s.to_dict() for s in self.sets],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        """Build a scenario from builtins (parsed TOML or :meth:`to_dict` output)."""
        if not isinstance(data, dict):
            raise ScenarioError("scenario must be a table of fields")
        known = {"name", "exercise", "disturbances", "calibration_s", "lead_out_s"}
        known |= {"description", "sets"}
        _reject_unknown(data, known, "")
        for key in ("name", "exercise", "sets"):
            if key not in data:
                raise ScenarioError(f"missing required field {key!r}")
        raw_sets = data["sets"]
        if not isinstance(raw_sets, list) or not raw_sets:
            raise ScenarioError("sets must be a non-empty array of tables ([[sets]])")
        sets = tuple(_set_from_dict(raw, i) for i, raw in enumerate(raw_sets))
        return cls(
            name=_typed(data, "name", str, ""),
            exercise=_typed(data, "exercise", str, ""),
            sets=sets,
            disturbances=_typed(data, "disturbances", bool, "", default=True),
            calibration_s=_number(data, "calibration_s", "", default=3.0),
            lead_out_s=_number(data, "lead_out_s", "", default=3.0),
            description=_typed(data, "description", str, "", default=""),
        )

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario from a TOML file; errors name the file and the field."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from exc

    @staticmethod
    def presets() -> list[str]:
        """Names of the shipped presets, sorted."""
        folder = resources.files(_PRESET_PACKAGE) / "scenarios"
        return sorted(
            p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
        )

    @classmethod
    def preset(cls, name: str) -> Scenario:
        """Load a shipped preset by name (``hip_thrust``, ``squat`` ...)."""
        names = cls.presets()
        if name not in names:
            raise ScenarioError(f"unknown scenario preset {name!r}; presets: {', '.join(names)}")
        text = (resources.files(_PRESET_PACKAGE) / "scenarios" / f"{name}.toml").read_text("utf-8")
        try:
            return cls.from_dict(tomllib.loads(text))
        except (ScenarioError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"preset {name}: {exc}") from exc

    @classmethod
    def from_name_or_path(cls, s: str | Path) -> Scenario:
        """A preset name, or else a path to a TOML file."""
        if isinstance(s, str) and s in cls.presets():
            return cls.preset(s)
        path = Path(s)
        if path.suffix == ".toml" or path.exists():
            return cls.load(path)
        raise ScenarioError(
            f"{s!r} is neither a preset ({', '.join(cls.presets())}) nor a .toml file"
        )

    @classmethod
    def random(
        cls,
        exercise: Exercise,
        rng: np.random.Generator,
        *,
        sets: int | None = None,
        touch_and_go: float = 0.0,
    ) -> Scenario:
        """Draw a varied, realistic scenario for evaluation corpora (see ``_RANDOM``).

        ``touch_and_go`` is the share of squat and deadlift sets played touch-and-go (the
        rest paused); with 0 no draw is spent on it, so older corpora come out the same.
        """
        if exercise not in EXERCISES:
            raise ScenarioError(f"exercise {exercise!r} unknown; allowed: {', '.join(EXERCISES)}")
        if not 0.0 <= touch_and_go <= 1.0:
            raise ScenarioError(f"touch_and_go = {touch_and_go!r}: a share, allowed 0..1")
        n_sets = int(rng.integers(2, 5)) if sets is None else sets
        if not 1 <= n_sets <= 10:
            raise ScenarioError(f"sets = {n_sets} out of range 1..10")
        plans = tuple(_random_set(exercise, rng, i, touch_and_go) for i in range(n_sets))
        return cls(
            name=f"random_{exercise}",
            exercise=exercise,
            sets=plans,
            disturbances=bool(rng.random() < 0.8),
            calibration_s=3.0,
            lead_out_s=float(rng.uniform(2.0, 6.0)),
            description="randomised",
        )


# --- random scenarios -------------------------------------------------------------------
# Ranges per exercise, drawn uniformly; chosen from typical gym practice and published
# velocity-based-training data (first-rep MCV ~0.3-1.0 m/s from heavy to light loads).
#   field           hip_thrust     bodyweight    squat         deadlift
_RANDOM: dict[Exercise, dict[str, tuple[float, float]]] = {
    "hip_thrust": {
        "reps": (5, 12),
        "load_kg": (40, 180),
        "rom_m": (0.18, 0.28),
        "mcv": (0.35, 0.85),
        "eccentric_s": (0.8, 2.0),
        "lockout_hold_s": (0.3, 2.0),
        "bottom_pause_s": (0.2, 0.8),
    },
    "bodyweight_hip_thrust": {
        "reps": (8, 20),
        "load_kg": (0, 0),
        "rom_m": (0.16, 0.28),
        "mcv": (0.45, 1.0),
        "eccentric_s": (0.6, 1.6),
        "lockout_hold_s": (0.3, 2.0),
        "bottom_pause_s": (0.2, 0.8),
    },
    "squat": {
        "reps": (3, 10),
        "load_kg": (40, 200),
        "rom_m": (0.45, 0.65),
        "mcv": (0.30, 1.0),
        "eccentric_s": (1.0, 2.5),
        "lockout_hold_s": (0.5, 2.0),
        "bottom_pause_s": (0.05, 0.3),
    },
    "deadlift": {
        "reps": (1, 8),
        "load_kg": (60, 250),
        "rom_m": (0.45, 0.60),
        "mcv": (0.30, 0.90),
        "eccentric_s": (0.8, 1.8),
        "lockout_hold_s": (0.3, 1.5),
        "bottom_pause_s": (0.5, 2.0),
    },
}
_RANDOM_REST_S = (60.0, 180.0)
_RANDOM_LEAD_IN_S = (15.0, 30.0)


def _random_set(
    exercise: Exercise, rng: np.random.Generator, index: int, touch_and_go: float = 0.0
) -> SetPlan:
    r = _RANDOM[exercise]

    def u(key: str) -> float:
        lo, hi = r[key]
        return float(rng.uniform(lo, hi))

    reps = int(rng.integers(int(r["reps"][0]), int(r["reps"][1]) + 1))
    rom = round(u("rom_m"), 3)
    concentric = round(rom / u("mcv"), 3)
    rest = float(rng.uniform(*(_RANDOM_LEAD_IN_S if index == 0 else _RANDOM_REST_S)))
    pauses: tuple[RestPause, ...] = ()
    if reps >= 4 and rng.random() < 0.3:
        pauses = (RestPause(int(rng.integers(2, reps - 1)), round(float(rng.uniform(10, 30)), 1)),)
    partials: tuple[int, ...] = ()
    if reps >= 3 and rng.random() < 0.25:
        k = int(rng.integers(1, 3))
        partials = tuple(
            sorted(int(x) for x in rng.choice(np.arange(2, reps + 1), k, replace=False))
        )
    pelvis = exercise in ("hip_thrust", "bodyweight_hip_thrust")
    hold = round(float(rng.uniform(2.0, 5.0)), 1)
    tilt: TiltPlan = "posterior_hold"
    tip = 0.0
    tip_from = 1
    sag = 0.0
    if pelvis and rng.random() < 0.3:
        # Keep a tipped lockout at least 3 degrees past the 5-degree verdict threshold.
        tilt, tip = "anterior_tip", round(hold + float(rng.uniform(9.0, 12.0)), 1)
        tip_from = int(rng.integers(1, max(2, reps // 2 + 1)))
    elif pelvis and rng.random() < 0.2:
        # A sagging bottom pushes the rep's tilt range past 50 degrees when the ROM allows it.
        need = 52.0 - math.degrees(math.asin(rom / HIP_LEVER_M)) - hold + float(rng.uniform(0, 3))
        if need <= 24.0:
            sag = round(need, 1)
    load = round(u("load_kg") / 2.5) * 2.5
    eccentric = round(u("eccentric_s"), 2)
    lockout = round(u("lockout_hold_s"), 2)
    bottom = round(u("bottom_pause_s"), 2)
    bounce = touch_and_go > 0 and exercise in _TOUCH_AND_GO and bool(rng.random() < touch_and_go)
    if bounce and exercise == "squat":
        lockout, bottom = 0.0, 0.0
    elif bounce:  # the deadlift's plates touch the floor and go; a short lockout at the top
        lockout = round(float(rng.uniform(0.1, 0.6)), 2)
        bottom = round(float(rng.uniform(0.0, _TOUCH_AND_GO_PAUSE_S)), 2)
    return SetPlan(
        reps=reps,
        load_kg=load,
        concentric_s=concentric,
        eccentric_s=eccentric,
        lockout_hold_s=lockout,
        bottom_pause_s=bottom,
        rom_m=rom,
        tilt=tilt,
        anterior_tip_deg=tip,
        rest_pauses=pauses,
        partial_reps=partials,
        partial_fraction=round(float(rng.uniform(0.25, 0.5)), 2),
        rest_before_s=round(rest, 1),
        posterior_hold_deg=hold,
        anterior_tip_from_rep=tip_from,
        bottom_anterior_deg=sag,
        velocity_loss=round(float(rng.uniform(0.08, 0.35)), 3),
        rep_jitter=round(float(rng.uniform(0.01, 0.05)), 3),
        touch_and_go=bounce,
    )


# --- parsing and validation ---------------------------------------------------------------


def _reject_unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise ScenarioError(
                f"unknown field {where}{key!r}; allowed fields: {', '.join(sorted(known))}"
            )


def _typed(data: dict[str, Any], key: str, kind: type, where: str, *, default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise ScenarioError(f"missing required field {where}{key}")
        return default
    value = data[key]
    if kind is int and isinstance(value, bool):
        raise ScenarioError(f"{where}{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}{key} must be {kind.__name__}, got {value!r}")
    return value


def _number(data: dict[str, Any], key: str, where: str, *, default: Any = ...) -> float:
    if key not in data:
        if default is ...:
            raise ScenarioError(f"missing required field {where}{key}")
        return float(default)
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}{key} must be a number, got {value!r}")
    return float(value)


def _set_from_dict(raw: Any, i: int) -> SetPlan:
    where = f"sets[{i}]."
    if not isinstance(raw, dict):
        raise ScenarioError(f"sets[{i}] must be a table")
    _reject_unknown(raw, {f.name for f in fields(SetPlan)}, where)
    pauses_raw = _typed(raw, "rest_pauses", list, where, default=[])
    pauses = []
    for j, p in enumerate(pauses_raw):
        pw = f"{where}rest_pauses[{j}]."
        if not isinstance(p, dict):
            raise ScenarioError(f"{where}rest_pauses[{j}] must be a table {{after_rep, pause_s}}")
        _reject_unknown(p, {"after_rep", "pause_s"}, pw)
        pauses.append(RestPause(_typed(p, "after_rep", int, pw), _number(p, "pause_s", pw)))
    partial_raw = _typed(raw, "partial_reps", list, where, default=[])
    for r in partial_raw:
        if isinstance(r, bool) or not isinstance(r, int):
            raise ScenarioError(f"{where}partial_reps must hold integers, got {r!r}")
    defaults = SetPlan(1, 0.0, 1.0, 1.0, 0.0, 0.0, 0.2)
    kwargs: dict[str, Any] = {}
    for f in fields(SetPlan):
        if f.name in ("rest_pauses", "partial_reps"):
            continue
        required = f.name in ("reps", "load_kg", "concentric_s", "eccentric_s")
        required |= f.name in ("lockout_hold_s", "bottom_pause_s", "rom_m")
        default = ... if required else getattr(defaults, f.name)
        if f.name in ("reps", "anterior_tip_from_rep"):
            kwargs[f.name] = _typed(raw, f.name, int, where, default=default)
        elif f.name == "touch_and_go":
            kwargs[f.name] = _typed(raw, f.name, bool, where, default=default)
        elif f.name == "tilt":
            kwargs[f.name] = _typed(raw, f.name, str, where, default=default)
        else:
            kwargs[f.name] = _number(raw, f.name, where, default=default)
    return SetPlan(**kwargs, rest_pauses=tuple(pauses), partial_reps=tuple(partial_raw))


def _check(name: str, value: float, lo: float, hi: float, unit: str = "") -> None:
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ScenarioError(f"{name} = {value!r} out of range: allowed {lo:g}..{hi:g}{unit}")


def _validate(s: Scenario) -> None:
    if not isinstance(s.name, str) or not s.name.strip():
        raise ScenarioError("name must be a non-empty string")
    if s.exercise not in EXERCISES:
        raise ScenarioError(f"exercise {s.exercise!r} unknown; allowed: {', '.join(EXERCISES)}")
    if not isinstance(s.disturbances, bool):
        raise ScenarioError(f"disturbances must be true or false, got {s.disturbances!r}")
    if not s.sets or len(s.sets) > 20:
        raise ScenarioError(f"sets: {len(s.sets)} sets; allowed 1..20")
    _check("calibration_s", s.calibration_s, 1.0, 10.0, " s")
    _check("lead_out_s", s.lead_out_s, 1.0, 60.0, " s")
    for i, p in enumerate(s.sets):
        _validate_set(p, f"sets[{i}].", s.exercise)


def _validate_set(p: SetPlan, w: str, exercise: Exercise) -> None:
    rom_lo, rom_hi = _ROM_RANGE[exercise]
    load_lo, load_hi = _LOAD_RANGE[exercise]
    if isinstance(p.reps, bool) or not isinstance(p.reps, int) or not 1 <= p.reps <= 50:
        raise ScenarioError(f"{w}reps = {p.reps!r} out of range: allowed 1..50")
    _check(w + "load_kg", p.load_kg, load_lo, load_hi, f" kg for {exercise}")
    _check(w + "rom_m", p.rom_m, rom_lo, rom_hi, f" m for {exercise}")
    _check(w + "concentric_s", p.concentric_s, 0.15, 5.0, " s")
    mcv = p.rom_m / p.concentric_s
    if not _MCV_RANGE[0] <= mcv <= _MCV_RANGE[1]:
        raise ScenarioError(
            f"{w}concentric_s = {p.concentric_s!r} gives a mean concentric velocity of "
            f"{mcv:.2f} m/s; allowed {_MCV_RANGE[0]:g}..{_MCV_RANGE[1]:g} m/s"
        )
    _check(w + "eccentric_s", p.eccentric_s, 0.2, 6.0, " s")
    _check(w + "lockout_hold_s", p.lockout_hold_s, 0.0, 10.0, " s")
    _check(w + "bottom_pause_s", p.bottom_pause_s, 0.0, 10.0, " s")
    _check(w + "rest_before_s", p.rest_before_s, 2.0, 900.0, " s")
    if p.tilt not in _TILT_PLANS:
        raise ScenarioError(f"{w}tilt = {p.tilt!r}; allowed: {', '.join(_TILT_PLANS)}")
    _check(w + "anterior_tip_deg", p.anterior_tip_deg, 0.0, 30.0, " deg")
    _check(w + "posterior_hold_deg", p.posterior_hold_deg, 0.0, 15.0, " deg")
    _check(w + "bottom_anterior_deg", p.bottom_anterior_deg, 0.0, 25.0, " deg")
    tip_from = p.anterior_tip_from_rep
    if isinstance(tip_from, bool) or not isinstance(tip_from, int) or not 1 <= tip_from <= p.reps:
        raise ScenarioError(f"{w}anterior_tip_from_rep = {tip_from!r}: allowed 1..{p.reps}")
    _check(w + "partial_fraction", p.partial_fraction, 0.2, 0.9)
    _check(w + "velocity_loss", p.velocity_loss, 0.0, 0.6)
    _check(w + "rep_jitter", p.rep_jitter, 0.0, 0.15)
    _validate_touch_and_go(p, w, exercise)
    _validate_rep_lists(p, w)


def _validate_touch_and_go(p: SetPlan, w: str, exercise: Exercise) -> None:
    if not isinstance(p.touch_and_go, bool):
        raise ScenarioError(f"{w}touch_and_go must be true or false, got {p.touch_and_go!r}")
    if not p.touch_and_go:
        return
    if exercise not in _TOUCH_AND_GO:
        raise ScenarioError(
            f"{w}touch_and_go is for {' and '.join(_TOUCH_AND_GO)}, not {exercise}; "
            "leave it out (or false)"
        )
    limit = _TOUCH_AND_GO_PAUSE_S
    if p.bottom_pause_s > limit:
        raise ScenarioError(
            f"{w}bottom_pause_s = {p.bottom_pause_s!r} in a touch-and-go set: allowed "
            f"0..{limit:g} s (a longer pause is a paused set: touch_and_go = false)"
        )
    if exercise == "squat" and p.lockout_hold_s > limit:
        raise ScenarioError(
            f"{w}lockout_hold_s = {p.lockout_hold_s!r} in a touch-and-go squat: allowed "
            f"0..{limit:g} s (a touch-and-go squat does not stop at the top)"
        )


def _validate_rep_lists(p: SetPlan, w: str) -> None:
    seen: set[int] = set()
    for r in p.partial_reps:
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= p.reps or r in seen:
            raise ScenarioError(
                f"{w}partial_reps holds {r!r}: entries must be distinct rep numbers 1..{p.reps}"
            )
        seen.add(r)
    if len(seen) == p.reps:
        raise ScenarioError(f"{w}partial_reps: at least one rep of the set must be full")
    last = 0
    for j, rp in enumerate(p.rest_pauses):
        if not isinstance(rp, RestPause):
            raise ScenarioError(f"{w}rest_pauses[{j}] must be a RestPause")
        if isinstance(rp.after_rep, bool) or not last < rp.after_rep < p.reps:
            raise ScenarioError(
                f"{w}rest_pauses[{j}].after_rep = {rp.after_rep!r}: "
                f"allowed {last + 1}..{p.reps - 1} (increasing, inside the set)"
            )
        last = rp.after_rep
        _check(f"{w}rest_pauses[{j}].pause_s", rp.pause_s, 5.0, 60.0, " s")
