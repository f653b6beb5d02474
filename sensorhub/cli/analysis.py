"""``sensorhub analyze`` (a recording) and ``sensorhub evaluate`` (accuracy against truth)."""

# ruff: noqa: PLC0415 - the analysis (numpy, SciPy) is imported by the commands that run it

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensorhub.analysis.athlete import AthleteAnalyzer
    from sensorhub.analysis.recording import Segment
    from sensorhub.analysis.reps import Rep
    from sensorhub.analysis.sets import SetSummary

EXERCISE_CHOICES = ("hip_thrust", "squat", "deadlift")


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
    analyze.add_argument("--role", required=True, choices=("bar", "pelvis"))
    analyze.add_argument("--exercise", required=True, choices=EXERCISE_CHOICES)
    analyze.add_argument("--accel-unit", choices=("g", "m/s2"), default="m/s2")
    analyze.add_argument("--gyro-unit", choices=("deg/s", "rad/s"), default="rad/s")
    analyze.add_argument("--load-kg", type=float, default=None, help="for mean power")
    analyze.add_argument("--json", action="store_true", help="print one JSON object")
    analyze.set_defaults(run=run_analyze)

    evaluate_parser = commands.add_parser(
        "evaluate",
        help="accuracy of the analysis on a randomised corpus from the sensor models",
    )
    evaluate_parser.add_argument(
        "--sets", type=int, default=60, help="sets per exercise (default 60; 240 in all)"
    )
    evaluate_parser.add_argument("--seed", type=int)  # default: EVALUATION_SEED, in run_evaluate
    evaluate_parser.add_argument(
        "--corpus",
        choices=("real", "clean"),
        default="real",
        help="real (default): lifters calm to shaky, touch-and-go sets, four IMU parts at 12.5-200 "
        "Hz over a lossy BLE link; clean: the corpus as first built (a still lifter, one "
        "part at 200 Hz, every sample delivered), for comparison",
    )
    evaluate_parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="IMU rate of every scenario, Hz (default: the corpus's own: a mix for real, "
        "200 for clean)",
    )
    evaluate_parser.add_argument(
        "--live",
        action="store_true",
        help="as a live session: started at a random moment before the first rep, the "
        "pelvis on the neutral pairing stored (default: from the recording's start, "
        "tilt's neutral measured on its opening bridge)",
    )
    evaluate_parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    evaluate_parser.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate_parser.set_defaults(run=run_evaluate)


def _rep_json(rep: Rep, set_index: int) -> dict[str, Any]:
    return {
        "set": set_index,
        "t_start": round(rep.t_start, 3),
        "t_end": round(rep.t_end, 3),
        "concentric_start": round(rep.concentric_start, 3),
        "concentric_end": round(rep.concentric_end, 3),
        "mcv_mps": round(rep.mcv_mps, 3),
        "peak_velocity_mps": round(rep.peak_velocity_mps, 3),
        "mpv_mps": round(rep.mpv_mps, 3),
        "rom_m": round(rep.rom_m, 3),
        "concentric_s": round(rep.concentric_s, 3),
        "eccentric_s": round(rep.eccentric_s, 3),
        "lockout_hold_s": round(rep.lockout_hold_s, 3),
        "time_under_tension_s": round(rep.time_under_tension_s, 3),
        "mean_power_w": None if rep.mean_power_w is None else round(rep.mean_power_w, 1),
        "partial": rep.partial,
    }


def _set_json(summary: SetSummary, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "t_start": round(summary.t_start, 3),
        "t_end": round(summary.t_end, 3),
        "reps": summary.rep_count,
        "partial_reps": sum(1 for rep in summary.reps if rep.partial),
        "best_mcv_mps": round(summary.best_mcv_mps, 3),
        "mean_mcv_mps": round(summary.mean_mcv_mps, 3),
        "last_mcv_mps": round(summary.last_mcv_mps, 3),
        "velocity_loss_pct": round(summary.velocity_loss_pct, 1),
        "rest_before_s": None if summary.rest_before_s is None else round(summary.rest_before_s, 1),
        "rest_pauses_s": [round(p, 1) for p in summary.rest_pauses_s],
    }


def _analyse_segment(segment: Segment, args: argparse.Namespace) -> AthleteAnalyzer:
    from sensorhub.analysis.athlete import AthleteAnalyzer
    from sensorhub.analysis.recording import RecordingError, still_window

    neutral = still_window(segment) if args.role == "pelvis" else None
    if args.role == "pelvis" and neutral is None:
        # Tilt is measured from the neutral pose; without one there is nothing to report.
        raise RecordingError(
            f"{args.file}: the pelvis never lies still for a second from "
            f"{segment.t[0]:.2f} s on, so there is no neutral pose to measure tilt from; "
            "start the recording with the athlete holding still"
        )
    analyzer = AthleteAnalyzer(
        "recording",
        args.exercise,
        rates={args.role: segment.rate_hz},
        load_kg=args.load_kg,
        neutral_window=neutral,
    )
    step = max(1, round(segment.rate_hz / 20))  # feed as a live hub would, 50 ms at a time
    for start in range(0, len(segment.t), step):
        window = slice(start, start + step)
        analyzer.feed_imu(args.role, segment.t[window], segment.accel[window], segment.gyro[window])
    analyzer.flush()
    return analyzer


async def run_analyze(args: argparse.Namespace) -> int:
    """Analyse one recording and print its reps and sets."""
    from sensorhub.analysis.recording import load_csv, regularise

    segments = regularise(load_csv(args.file, accel_unit=args.accel_unit, gyro_unit=args.gyro_unit))
    reps: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    for segment in segments:
        analyzer = _analyse_segment(segment, args)
        for summary in analyzer.sets:
            sets.append(_set_json(summary, len(sets) + 1))
            reps += [_rep_json(rep, len(sets)) for rep in summary.reps]
    result = {
        "file": str(args.file),
        "role": args.role,
        "exercise": args.exercise,
        "sample_rate_hz": segments[0].rate_hz,
        "segments": len(segments),
        "reps": reps,
        "sets": sets,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.file}: {len(sets)} set(s), {sum(s['reps'] for s in sets)} rep(s)")
    for entry in sets:
        print(
            f"set {entry['index']}: {entry['reps']} reps, "
            f"best MCV {entry['best_mcv_mps']} m/s, "
            f"velocity loss {entry['velocity_loss_pct']} %"
        )
        for rep in (r for r in reps if r["set"] == entry["index"]):
            flag = "  (partial)" if rep["partial"] else ""
            print(
                f"  {rep['t_start']:8.2f} s  MCV {rep['mcv_mps']:.2f} m/s  peak "
                f"{rep['peak_velocity_mps']:.2f} m/s  ROM {rep['rom_m'] * 100:.1f} cm{flag}"
            )
    return 0


async def run_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation corpus and print the figures."""
    from sensorhub.analysis.evaluate import EVALUATION_SEED, evaluate, format_table

    figures = evaluate(
        args.sets,
        seed=EVALUATION_SEED if args.seed is None else args.seed,
        rate_hz=args.rate,
        live=args.live,
        corpus_kind=args.corpus,
        workers=args.workers,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_table(figures))
    return 0
