"""``sensorhub bench``: pipeline throughput, event latency and the hub at scale, in one run."""

# ruff: noqa: PLC0415 - the bench (MQTT, the analysis, rich) is imported when it runs

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from sensorhub.bench import PARTS
from sensorhub.errors import ConfigError


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give sensor counts separated by commas, e.g. 1,10,40"
        ) from None
    if not counts or min(counts) < 1 or max(counts) > 200:
        raise argparse.ArgumentTypeError(f"{text!r}: each count must be 1 to 200")
    return counts


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not parts or parts - set(PARTS):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(PARTS)}")
    return parts


def add_parser(commands: Any) -> None:
    """Add the sub-command to the CLI."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="measure throughput, latency and the hub's CPU and memory",
        description=(
            "Measure, side by side in one run: IMU samples per second per core through "
            "decode, fusion, tilt, velocity, reps and records against imufusion alone; "
            "latency from a notification to its event at an MQTT subscriber (mosquitto "
            "when installed); and the hub process with virtual sensors in another process "
            "(CPU % of one core, RSS, RSS over a soak). The scale part reads /proc: Linux "
            "only. Progress goes to stderr."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick", action="store_true", help="short everything (CI): sensors 1,4, short windows"
    )
    parser.add_argument(
        "--soak-s",
        type=float,
        metavar="S",
        help="how long to watch the hub's RSS at the largest sensor count (default: 600, "
        "--quick 6; 0: no soak)",
    )
    parser.add_argument(
        "--sensors",
        type=_counts,
        metavar="N,N,…",
        help="sensor counts for the scale part (default: 1,10,40; --quick 1,4)",
    )
    parser.add_argument(
        "--only",
        type=_parts,
        metavar="PART,…",
        help=f"measure only these parts ({', '.join(PARTS)})",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the hub and emulator logs of the run"
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures."""
    from rich.console import Console

    from sensorhub.bench.report import render
    from sensorhub.bench.runner import BenchOptions, run_bench

    changes: dict[str, Any] = {}
    if args.soak_s is not None:
        if not 0 <= args.soak_s <= 24 * 3600:
            raise ConfigError(f"--soak-s {args.soak_s}: give 0 to 86400 seconds")
        changes["soak_s"] = args.soak_s
    if args.sensors is not None:
        changes["sensors"] = args.sensors
    if args.only is not None:
        changes["parts"] = args.only
    changes["keep_logs"] = args.keep_logs
    options = BenchOptions.quick(**changes) if args.quick else BenchOptions(**changes)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # SIGTERM (`timeout`, a CI runner) stops the bench as Ctrl-C does: its hub, virtual
    # sensors and broker are stopped too, not left running to skew the next measurement.
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    terminated: list[bool] = []

    def on_sigterm() -> None:
        terminated.append(True)
        main.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        result = await run_bench(options, say=say)
    except asyncio.CancelledError:
        if not terminated:
            raise  # Ctrl-C: asyncio.run makes it a KeyboardInterrupt
        say("sensorhub bench: stopped by SIGTERM; its processes have been stopped")
        return 128 + signal.SIGTERM
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, Console())
    return 0
