"""Ground truth of a virtual session: every rep, set, disturbance and the true traces.

Definitions (all times in seconds since the scenario start, SI units, tilt in degrees):

Rep phases
    A hip thrust or deadlift rep starts at the bottom: concentric, lockout hold, eccentric;
    ``t_start = concentric_start`` and ``t_end = eccentric_end``; the bottom pause (or a
    rest-pause) lies between reps. A squat rep starts standing: eccentric, bottom pause,
    concentric, lockout hold; ``t_start = eccentric_start`` and ``t_end = lockout_end``.
    The concentric phase runs from the start of upward motion of the lift body to the top
    (zero velocity); the lockout is the hold at the top. The lift body is the bar, or the
    pelvis in a bodyweight hip thrust. Phases are the scheduled ones: a lifter's tremor and
    sway (:mod:`firmware_protocol.virtual.physiology`), millimetres at most, move on
    through them. In a touch-and-go set the bottom pause (deadlift) or both the bottom
    pause and the lockout (squat) last 0-0.1 s, and the velocity passes through zero there
    without resting.
Velocity metrics (vertical, of the lift body)
    ``mcv_mps``: mean vertical velocity over the concentric phase, i.e. rise / duration.
    ``peak_velocity_mps``: maximum vertical velocity in the concentric phase.
    ``mpv_mps``: mean vertical velocity from concentric start until the vertical
    acceleration first drops below -g (the bar would coast), or over the whole concentric
    phase when it never does. ``rom_m``: vertical rise from concentric start to end.
Pelvic tilt (pelvis scenarios; convention in :mod:`firmware_protocol.virtual.motion`)
    ``tilt_bottom_deg``: tilt at concentric start. ``tilt_lockout_deg``: mean tilt over
    [lockout_start, lockout_end] (tilt at concentric end if the hold is under 10 ms).
    ``tilt_range_deg``: max - min of tilt over [t_start, t_end].
    Verdict, checked in this order (:func:`tilt_verdict`):
    partial rep -> ``None`` (no lockout reached, reason says so);
    ``tilt_lockout_deg < -5`` (more than 5° anterior of the calibrated neutral) ->
    ``"anterior_tilt"``; ``tilt_range_deg > 45`` -> ``"large_range"``; otherwise ``"ok"``
    (reason ``None``). Good full reps span about 15-40° (trunk rotation with hip
    extension plus the posterior tuck); randomised scenarios keep full reps at least 2.5° from
    both limits so the verdict never hinges on measurement noise.
Sets
    ``reps`` counts full reps only; ``partial_reps`` counts the partial ones. ``rest_before_s``
    is the measured gap from the previous set's last ``t_end`` (first set: from the end of the
    calibration period, or from 0) to this set's first ``t_start``. ``rest_pauses`` are the
    gaps between consecutive reps that the plan marks as rest-pauses. Velocity loss is
    ``(best MCV - last full rep's MCV) / best MCV * 100`` over full reps.

JSON Lines file (:meth:`GroundTruth.write_jsonl`), one object per line, by ``type``:
    ``scenario``: the scenario (``Scenario.to_dict()`` fields) plus ``seed``, ``duration_s``,
    ``bodies``, ``lift_body``, ``tilt_convention``, ``anterior_tilt_limit_deg``,
    ``large_range_limit_deg``, ``trace_hz`` and ``lifter`` (the
    :class:`~firmware_protocol.virtual.physiology.Lifter` fields, or null for none);
    ``calibration``: ``t_start``, ``t_end`` (pelvis scenarios);
    ``disturbance``: ``kind``, ``body``, ``t_start``, ``t_end``;
    ``set``: the :class:`SetTruth` fields, followed by that set's ``rep`` lines with the
    :class:`RepTruth` fields;
    ``tilt``: ``t``, ``deg`` — true tilt sampled at ``trace_hz`` (pelvis scenarios);
    ``lift``: ``t``, ``z_m``, ``vz_mps`` — the lift body's height above its start and its
    vertical velocity, sampled at ``trace_hz``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

if TYPE_CHECKING:
    from firmware_protocol.virtual.motion import Trajectory
    from firmware_protocol.virtual.scenario import Scenario

__all__ = [
    "ANTERIOR_TILT_LIMIT_DEG",
    "LARGE_RANGE_LIMIT_DEG",
    "DisturbanceTruth",
    "GroundTruth",
    "RepTiming",
    "RepTruth",
    "SetTruth",
    "TiltVerdict",
    "build_truth",
    "tilt_verdict",
]

FloatArray = NDArray[np.float64]
TiltVerdict = Literal["ok", "anterior_tilt", "large_range"]
LiftFn = Callable[[FloatArray], tuple[FloatArray, FloatArray, FloatArray]]
TiltFn = Callable[[FloatArray], FloatArray]

ANTERIOR_TILT_LIMIT_DEG = 5.0
LARGE_RANGE_LIMIT_DEG = 45.0
_G = 9.80665
_TILT_CONVENTION = (
    "sagittal rotation of the pelvis about its mediolateral axis relative to the neutral "
    "calibration bridge, degrees, positive = posterior"
)


def tilt_verdict(
    lockout_deg: float, range_deg: float, *, partial: bool
) -> tuple[TiltVerdict | None, str | None]:
    """Apply the verdict rule of the module docstring; returns (verdict, reason)."""
    if partial:
        return None, "partial rep: lockout not reached"
    if lockout_deg < -ANTERIOR_TILT_LIMIT_DEG:
        return "anterior_tilt", (
            f"pelvis {-lockout_deg:.1f}° anterior of neutral at lockout "
            f"(limit {ANTERIOR_TILT_LIMIT_DEG:g}°)"
        )
    if range_deg > LARGE_RANGE_LIMIT_DEG:
        return "large_range", (
            f"tilt range {range_deg:.1f}° within the rep (limit {LARGE_RANGE_LIMIT_DEG:g}°)"
        )
    return "ok", None


@dataclass(frozen=True, slots=True)
class RepTiming:
    """Phase boundaries of one scheduled rep (input to :func:`build_truth`)."""

    set_index: int
    rep_index: int
    t_start: float
    t_end: float
    eccentric_start: float
    eccentric_end: float
    concentric_start: float
    concentric_end: float
    lockout_start: float
    lockout_end: float
    partial: bool


@dataclass(frozen=True, slots=True)
class RepTruth:
    """One rep as it truly happened. ``set_index`` and ``rep_index`` are 1-based."""

    set_index: int
    rep_index: int
    t_start: float
    t_end: float
    eccentric_start: float
    eccentric_end: float
    concentric_start: float
    concentric_end: float
    lockout_start: float
    lockout_end: float
    mcv_mps: float
    peak_velocity_mps: float
    mpv_mps: float
    rom_m: float
    tilt_bottom_deg: float | None
    tilt_lockout_deg: float | None
    tilt_range_deg: float | None
    tilt_verdict: TiltVerdict | None
    tilt_reason: str | None
    partial: bool


@dataclass(frozen=True, slots=True)
class SetTruth:
    """One set as it truly happened. ``index`` is 1-based."""

    index: int
    t_start: float
    t_end: float
    reps: int
    partial_reps: int
    load_kg: float
    rest_before_s: float
    rest_pauses: tuple[float, ...]
    best_mcv_mps: float = 0.0
    mean_mcv_mps: float = 0.0
    velocity_loss_pct: float = 0.0


@dataclass(frozen=True, slots=True)
class DisturbanceTruth:
    """Motion that is not a rep: walking, setting up, re-racking, fidgeting, settling."""

    kind: str
    body: str
    t_start: float
    t_end: float


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Everything the analysis is scored against."""

    reps: tuple[RepTruth, ...]
    sets: tuple[SetTruth, ...]
    disturbances: tuple[DisturbanceTruth, ...] = ()
    calibration: tuple[float, float] | None = None

    def write_jsonl(
        self, path: str | Path, trajectory: Trajectory, *, tilt_hz: float = 50.0
    ) -> None:
        """Write the truth as JSON Lines (layout in the module docstring)."""
        if not 0.1 <= tilt_hz <= 1000.0:
            raise ValueError(f"tilt_hz = {tilt_hz!r}: allowed 0.1..1000 Hz")
        header: dict[str, Any] = {"type": "scenario", **trajectory.scenario.to_dict()}
        header |= {
            "seed": trajectory.seed,
            "duration_s": trajectory.duration_s,
            "bodies": list(trajectory.bodies),
            "lift_body": trajectory.lift_body,
            "tilt_convention": _TILT_CONVENTION,
            "anterior_tilt_limit_deg": ANTERIOR_TILT_LIMIT_DEG,
            "large_range_limit_deg": LARGE_RANGE_LIMIT_DEG,
            "trace_hz": tilt_hz,
            "lifter": None if trajectory.lifter is None else asdict(trajectory.lifter),
        }
        lines = [header]
        if self.calibration is not None:
            lines.append(
                {
                    "type": "calibration",
                    "t_start": self.calibration[0],
                    "t_end": self.calibration[1],
                }
            )
        lines.extend({"type": "disturbance", **asdict(d)} for d in self.disturbances)
        for st in self.sets:
            lines.append({"type": "set", **asdict(st)})
            lines.extend({"type": "rep", **asdict(r)} for r in self.reps if r.set_index == st.index)
        t = np.arange(0.0, trajectory.duration_s, 1.0 / tilt_hz)
        if "pelvis" in trajectory.bodies:
            deg = trajectory.tilt_deg(t)
            lines.extend(
                {"type": "tilt", "t": round(float(a), 6), "deg": round(float(b), 4)}
                for a, b in zip(t, deg, strict=True)
            )
        state = trajectory.state(trajectory.lift_body, t)
        z = (
            state.position[:, 2]
            - trajectory.state(trajectory.lift_body, np.zeros(1)).position[0, 2]
        )
        lines.extend(
            {
                "type": "lift",
                "t": round(float(a), 6),
                "z_m": round(float(b), 6),
                "vz_mps": round(float(c), 6),
            }
            for a, b, c in zip(t, z, state.velocity[:, 2], strict=True)
        )
        with Path(path).open("w", encoding="utf-8") as fh:
            for obj in lines:
                fh.write(json.dumps(obj, ensure_ascii=False, allow_nan=False))
                fh.write("\n")


# --- computing the truth from exact kinematics -----------------------------------------------


def _velocity_metrics(lift: LiftFn, c0: float, c1: float) -> tuple[float, float, float, float]:
    """(MCV, peak, MPV, ROM) of one concentric phase, to ~1e-9 relative."""
    z_ends = lift(np.array([c0, c1]))[0]
    rom = float(z_ends[1] - z_ends[0])
    mcv = rom / (c1 - c0)
    grid = np.linspace(c0, c1, 4001)
    _, vz, az = lift(grid)
    i = int(np.argmax(vz))
    fine = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)], 2001)
    peak = max(float(vz[i]), float(lift(fine)[1].max()))
    below = np.flatnonzero(az < -_G)
    mpv = mcv
    if below.size and below[0] > 0:
        j = int(below[0])
        tp = optimize.brentq(
            lambda x: float(lift(np.array([x]))[2][0]) + _G, grid[j - 1], grid[j], xtol=1e-12
        )
        zp = lift(np.array([c0, tp]))[0]
        mpv = float(zp[1] - zp[0]) / (tp - c0)
    return mcv, peak, mpv, rom


def _tilt_metrics(tilt: TiltFn, r: RepTiming) -> tuple[float, float, float]:
    bottom = float(tilt(np.array([r.concentric_start]))[0])
    if r.lockout_end - r.lockout_start < 0.01:
        lockout = float(tilt(np.array([r.concentric_end]))[0])
    else:
        lockout = float(np.mean(tilt(np.linspace(r.lockout_start, r.lockout_end, 201))))
    n = max(2001, int((r.t_end - r.t_start) * 1000))
    trace = tilt(np.linspace(r.t_start, r.t_end, n))
    return bottom, lockout, float(trace.max() - trace.min())


def build_truth(
    scenario: Scenario,
    timings: Sequence[RepTiming],
    disturbances: Sequence[DisturbanceTruth],
    *,
    calibration: tuple[float, float] | None,
    lift: LiftFn,
    tilt: TiltFn | None,
) -> GroundTruth:
    """Measure every scheduled rep on the exact kinematics and summarise the sets."""
    reps = []
    for r in timings:
        mcv, peak, mpv, rom = _velocity_metrics(lift, r.concentric_start, r.concentric_end)
        tb = tl = tr = None
        verdict: TiltVerdict | None = None
        reason = None
        if tilt is not None:
            tb, tl, tr = _tilt_metrics(tilt, r)
            verdict, reason = tilt_verdict(tl, tr, partial=r.partial)
        reps.append(
            RepTruth(
                r.set_index,
                r.rep_index,
                r.t_start,
                r.t_end,
                r.eccentric_start,
                r.eccentric_end,
                r.concentric_start,
                r.concentric_end,
                r.lockout_start,
                r.lockout_end,
                mcv,
                peak,
                mpv,
                rom,
                tb,
                tl,
                tr,
                verdict,
                reason,
                r.partial,
            )
        )
    sets = []
    prev_end = calibration[1] if calibration is not None else 0.0
    for i, plan in enumerate(scenario.sets, start=1):
        mine = [r for r in reps if r.set_index == i]
        full = [r.mcv_mps for r in mine if not r.partial]
        pause_after = {p.after_rep for p in plan.rest_pauses}
        pauses = tuple(
            b.t_start - a.t_end for a, b in itertools.pairwise(mine) if a.rep_index in pause_after
        )
        best = max(full)
        sets.append(
            SetTruth(
                index=i,
                t_start=mine[0].t_start,
                t_end=mine[-1].t_end,
                reps=len(full),
                partial_reps=len(mine) - len(full),
                load_kg=plan.load_kg,
                rest_before_s=mine[0].t_start - prev_end,
                rest_pauses=pauses,
                best_mcv_mps=best,
                mean_mcv_mps=float(np.mean(full)),
                velocity_loss_pct=(best - full[-1]) / best * 100.0,
            )
        )
        prev_end = mine[-1].t_end
    return GroundTruth(tuple(reps), tuple(sets), tuple(disturbances), calibration)
