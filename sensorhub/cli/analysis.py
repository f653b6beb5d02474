"""``sensorhub analyze`` (a recording) and ``sensorhub evaluate`` (accuracy: models, labels)."""

# ruff: noqa: PLC0415 - the analysis (numpy, SciPy) is imported by the commands that run it

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sensorhub.analysis.exercises import EXERCISES
from sensorhub.errors import ConfigError
from sensorhub.registry import ROLES

if TYPE_CHECKING:
    from sensorhub.analysis.analyze import AnalysedRep, RecordingAnalysis
    from sensorhub.analysis.sets import SetSummary
    from sensorhub.analysis.tilt import RepTilt


SET_GAP_HELP: Final = (
    "no rep for this long ends a set (default 45 s; 6 to 3600, as the service's "
    "[analysis] set_gap_s); shorter breaks are rest-pauses"
)


def add_parsers(commands: Any) -> None:
    """Add analyze and evaluate to the CLI."""
    analyze = commands.add_parser(
        "analyze",
        help="reps, sets and their metrics from a recording of one sensor",
        description="Analyse a CSV recording of one IMU (columns t, ax, ay, az, gx, gy, gz). "
        "Irregular sampling, repeated rows and gaps are handled; the sensor may be mounted "
        "any way round.",
    )
    analyze.add_argument("file", type=Path)
    analyze.add_argument("--role", required=True, choices=ROLES)
    analyze.add_argument("--exercise", required=True, choices=EXERCISES)
    analyze.add_argument("--accel-unit", choices=("g", "m/s2"), default="m/s2")
    analyze.add_argument("--gyro-unit", choices=("deg/s", "rad/s"), default="rad/s")
    analyze.add_argument("--load-kg", type=float, default=None, help="for mean power")
    analyze.add_argument("--set-gap-s", type=float, default=None, help=SET_GAP_HELP)
    analyze.add_argument("--json", action="store_true", help="print one JSON object")
    analyze.set_defaults(run=run_analyze)

    evaluate_parser = commands.add_parser(
        "evaluate",
        help="accuracy of the analysis on a randomised corpus from the sensor models, or on "
        "your own labelled recordings",
        description="Without --recordings: accuracy on a randomised corpus from the sensor "
        "models, against their ground truth. With --recordings DIR: accuracy on the "
        "recordings in DIR against DIR/labels.csv (per file: role, exercise, units, reps "
        "and optionally per-rep reference velocities; see the README).",
    )
    evaluate_parser.add_argument(
        "--recordings",
        type=Path,
        metavar="DIR",
        help="a folder of recordings (CSV, as analyze takes) with labels.csv beside them",
    )
    evaluate_parser.add_argument(
        "--sets", type=int, help="model corpus: sets per exercise (default 60; 240 in all)"
    )
    evaluate_parser.add_argument("--seed", type=int, help="model corpus: its seed")
    evaluate_parser.add_argument(
        "--corpus",
        choices=("real", "clean"),
        default=None,
        help="model corpus: real (default): lifters calm to shaky, touch-and-go sets, four "
        "IMU parts at 12.5-200 Hz over a lossy BLE link; clean: the corpus as first built "
        "(a still lifter, one part at 200 Hz, every sample delivered), for comparison",
    )
    evaluate_parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="model corpus: IMU rate of every scenario, Hz (default: the corpus's own: a "
        "mix for real, 200 for clean)",
    )
    evaluate_parser.add_argument(
        "--live",
        action="store_true",
        help="model corpus, as a live session: started at a random moment before the first "
        "rep, the pelvis on the neutral pairing stored (default: from the recording's start, "
        "tilt's neutral measured on its opening bridge)",
    )
    evaluate_parser.add_argument("--set-gap-s", type=float, help=f"--recordings: {SET_GAP_HELP}")
    evaluate_parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    evaluate_parser.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate_parser.set_defaults(run=run_evaluate)


def _number(value: float | None, digits: int) -> float | None:
    """Rounded for JSON; None for a missing or non-finite value (JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _tilt_json(tilt: RepTilt | None) -> dict[str, Any] | None:
    if tilt is None:
        return None
    return {
        "bottom_deg": round(tilt.bottom_deg, 2),
        "lockout_deg": round(tilt.lockout_deg, 2),
        "range_deg": round(tilt.range_deg, 2),
        "verdict": tilt.verdict,
        "reason": tilt.reason,
    }


def _rep_json(found: AnalysedRep) -> dict[str, Any]:
    rep = found.rep
    return {
        "set": found.set_index,
        "t_start": round(rep.t_start, 3),
        "t_end": round(rep.t_end, 3),
        "concentric_start": round(rep.concentric_start, 3),
        "concentric_end": round(rep.concentric_end, 3),
        "mcv_mps": _number(rep.mcv_mps, 3),
        "peak_velocity_mps": _number(rep.peak_velocity_mps, 3),
        "mpv_mps": _number(rep.mpv_mps, 3),
        "rom_m": _number(rep.rom_m, 3),
        "concentric_s": round(rep.concentric_s, 3),
        "eccentric_s": round(rep.eccentric_s, 3),
        "lockout_hold_s": round(rep.lockout_hold_s, 3),
        "time_under_tension_s": round(rep.time_under_tension_s, 3),
        "mean_power_w": _number(rep.mean_power_w, 1),
        "partial": rep.partial,
        "tilt": _tilt_json(found.tilt),
    }


def _set_json(summary: SetSummary) -> dict[str, Any]:
    return {
        "index": summary.index,
        "t_start": round(summary.t_start, 3),
        "t_end": round(summary.t_end, 3),
        "reps": summary.rep_count,
        "partial_reps": sum(1 for rep in summary.reps if rep.partial),
        "best_mcv_mps": _number(summary.best_mcv_mps, 3),
        "mean_mcv_mps": _number(summary.mean_mcv_mps, 3),
        "last_mcv_mps": _number(summary.last_mcv_mps, 3),
        "velocity_loss_pct": _number(summary.velocity_loss_pct, 1),
        "rest_before_s": _number(summary.rest_before_s, 1),
        "rest_pauses_s": [round(p, 1) for p in summary.rest_pauses_s],
    }


def analysis_json(result: RecordingAnalysis) -> dict[str, Any]:
    """The object ``sensorhub analyze --json`` prints (times on the recording's clock, s)."""
    from sensorhub.analysis.analyze import TILT_TRACE_RATE_HZ

    trace = None
    if result.role == "pelvis":
        trace = {
            "rate_hz": TILT_TRACE_RATE_HZ,
            "t": [round(float(t), 3) for t in result.tilt_t],
            "tilt_deg": [_number(float(deg), 2) for deg in result.tilt_deg],
        }
    return {
        "file": str(result.path),
        "role": result.role,
        "exercise": result.exercise,
        "sample_rate_hz": result.sample_rate_hz,
        "segments": result.segments,
        "recording_start_s": round(result.start_s, 3),
        "duration_s": round(result.duration_s, 3),
        "set_gap_s": result.set_gap_s,
        "reps": [_rep_json(found) for found in result.reps],
        "sets": [_set_json(summary) for summary in result.sets],
        "tilt_trace": trace,
        "no_reps_reason": result.no_reps_reason,
    }


def format_analysis(result: RecordingAnalysis) -> str:
    """The text ``sensorhub analyze`` prints: sets and reps, times from the recording's start."""
    lines = [
        f"{result.path}: {len(result.sets)} set(s), {result.full_reps} rep(s) "
        f"({result.duration_s:.1f} s at {result.sample_rate_hz:g} Hz"
        + (f", {result.segments} stretches between gaps" if result.segments > 1 else "")
        + "; times from the recording's start)"
    ]
    if result.role == "pelvis":
        lines.append("pelvic tilt in degrees from the neutral pose: + posterior, - anterior")
    for summary in result.sets:
        at = f"at {summary.t_start - result.start_s:.1f} s"
        partial = sum(1 for rep in summary.reps if rep.partial)
        extra = f" and {partial} partial" if partial else ""
        if result.role == "pelvis":
            verdicts = Counter(
                found.tilt.verdict if found.tilt is not None else "unknown"
                for found in result.reps
                if found.set_index == summary.index and not found.rep.partial
            )
            told = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items(), key=str))
            lines.append(f"set {summary.index} ({at}): {summary.rep_count} reps{extra}; {told}")
        else:
            lines.append(
                f"set {summary.index} ({at}): {summary.rep_count} reps{extra}, "
                f"best MCV {summary.best_mcv_mps:.2f} m/s, "
                f"velocity loss {summary.velocity_loss_pct:.1f} %"
            )
        lines += [_rep_line(f, result) for f in result.reps if f.set_index == summary.index]
    return "\n".join(lines)


def _rep_line(found: AnalysedRep, result: RecordingAnalysis) -> str:
    rep, tilt = found.rep, found.tilt
    at = f"  {rep.t_start - result.start_s:8.2f} s"
    if result.role == "pelvis":
        if tilt is None:
            return (
                f"{at}  tilt unknown (not yet measured: the axis is learned from the first swings)"
            )
        verdict = tilt.verdict or "partial"
        reason = f": {tilt.reason}" if tilt.reason and tilt.verdict else ""
        return (
            f"{at}  tilt bottom {tilt.bottom_deg:+6.1f}°  lockout {tilt.lockout_deg:+6.1f}°  "
            f"range {tilt.range_deg:5.1f}°  {verdict}{reason}"
        )
    flag = "  (partial)" if rep.partial else ""
    return (
        f"{at}  MCV {rep.mcv_mps:.2f} m/s  peak {rep.peak_velocity_mps:.2f} m/s  "
        f"ROM {rep.rom_m * 100:.1f} cm{flag}"
    )


async def run_analyze(args: argparse.Namespace) -> int:
    """Analyse one recording and print its reps and sets; status 1 when no rep is found."""
    from sensorhub.analysis.analyze import analyze_recording

    result = analyze_recording(
        args.file,
        role=args.role,
        exercise=args.exercise,
        accel_unit=args.accel_unit,
        gyro_unit=args.gyro_unit,
        set_gap_s=args.set_gap_s,
        load_kg=args.load_kg,
    )
    print(json.dumps(analysis_json(result), indent=2) if args.json else format_analysis(result))
    if result.no_reps_reason is not None:
        print(f"sensorhub: {args.file}: no reps found: {result.no_reps_reason}", file=sys.stderr)
        return 1
    return 0


async def run_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation (model corpus or labelled recordings) and print the figures."""
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more processes")
    if args.recordings is not None:
        return _evaluate_recordings(args)
    if args.set_gap_s is not None:
        raise ConfigError("--set-gap-s applies to --recordings (the model corpus has its own)")
    from sensorhub.analysis.evaluate import EVALUATION_SEED, evaluate, format_table

    figures = evaluate(
        60 if args.sets is None else args.sets,
        seed=EVALUATION_SEED if args.seed is None else args.seed,
        rate_hz=args.rate,
        live=args.live,
        corpus_kind="real" if args.corpus is None else args.corpus,
        workers=args.workers,
        progress=_progress,
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_table(figures))
    return 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _evaluate_recordings(args: argparse.Namespace) -> int:
    """Score the labelled recordings of a folder; status 1 if a file could not be analysed."""
    corpus_only = {
        "--sets": args.sets,
        "--seed": args.seed,
        "--rate": args.rate,
        "--corpus": args.corpus,
    }
    given = [name for name, value in corpus_only.items() if value is not None]
    if args.live:
        given.append("--live")
    if given:
        raise ConfigError(
            f"{', '.join(given)} apply to the model corpus, not to --recordings: leave them out"
        )
    from sensorhub.analysis.analyze import check_set_gap_s
    from sensorhub.analysis.labelled import evaluate_recordings, format_report

    gap = None if args.set_gap_s is None else check_set_gap_s(args.set_gap_s)
    report = evaluate_recordings(
        args.recordings, set_gap_s=gap, workers=args.workers, progress=_progress
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    failed = report["all"]["failed"]
    if failed:
        print(
            f"sensorhub: {failed} file(s) could not be analysed; their lines say why",
            file=sys.stderr,
        )
        return 1
    return 0
