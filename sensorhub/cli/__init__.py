"""The ``sensorhub`` command: one CLI for everything users do.

Building the parser must stay cheap (``--help``, usage errors and light commands pay for
it): the sub-command modules import Bumble, SciPy, MQTT and the like only in the
functions that run a command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sensorhub import __version__
from sensorhub.cli import analysis, bench, demo, emulate, run, sensors, sessions
from sensorhub.errors import SensorhubError

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="sensorhub",
        description="Bluetooth LE motion sensors for barbell training.",
    )
    parser.add_argument("--version", action="version", version=f"sensorhub {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (run, demo, emulate, bench):
        module.add_parser(commands)
    sensors.add_parsers(commands)
    analysis.add_parsers(commands)
    sessions.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose < 2:
        # Bumble logs every dropped advertisement at INFO; keep it for -vv.
        logging.getLogger("bumble").setLevel(logging.WARNING)
        # Its software controller (only the virtual radio's) warns of every packet still
        # in flight when a virtual link goes: noise at the end of each demo or bench.
        logging.getLogger("bumble.controller").setLevel(logging.ERROR)
    command: Command = args.run
    try:
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        return 130
    except (SensorhubError, OSError) as exc:
        print(f"sensorhub: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
