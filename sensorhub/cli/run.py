"""``sensorhub run``: the service, until SIGINT or SIGTERM (or ``--duration``)."""

# ruff: noqa: PLC0415 - the service (Bumble, MQTT, the analysis, rich) is imported when it runs

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorhub.cli.sensors import _ble_arg, seconds_arg
from sensorhub.config import EXERCISES, ServiceConfig

if TYPE_CHECKING:
    from sensorhub.service import RecordSink


def add_parser(commands: Any) -> None:
    """Add the sub-command to the CLI."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run the hub: sensors, analysis, MQTT, session recording",
        description="Run the hub service until interrupted (SIGINT/SIGTERM end it cleanly: "
        "the session is closed and everything recorded is flushed).",
    )
    add_service_options(parser)
    parser.add_argument("--config", type=Path, help="a TOML configuration file")
    parser.add_argument("--ble", type=_ble_arg, help="radio (overrides [hub] ble)")
    parser.add_argument("--hub-name", help="the hub's id in MQTT topics")
    parser.add_argument("--exercise", choices=EXERCISES, help="exercise of the session")
    parser.add_argument(
        "--no-session", action="store_true", help="do not start a session (wait for a command)"
    )
    parser.set_defaults(run=run)


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """Options ``run`` and ``demo`` share."""
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="MQTT broker, e.g. mqtt://host:1883 or mqtts://user@host (default: an embedded "
        "broker on localhost); the password comes from $SENSORHUB_MQTT_PASSWORD",
    )
    parser.add_argument("--state-dir", type=Path, help="registry, bonds and sessions")
    parser.add_argument("--duration", type=seconds_arg, help="stop after this many seconds")
    parser.add_argument("--no-ui", action="store_true", help="plain lines instead of the live view")
    parser.add_argument("--live-rate", type=float, help="tilt/velocity stream rate, Hz (10)")


@contextlib.asynccontextmanager
async def view_for(args: argparse.Namespace, title: str) -> AsyncIterator[RecordSink]:
    """The live view in a terminal, plain lines otherwise."""
    from rich.console import Console

    from sensorhub.live import LiveView, PlainView

    if args.no_ui or not sys.stdout.isatty():
        yield PlainView(sys.stdout)
        return
    async with LiveView(Console(), title=title) as view:
        yield view


async def wait_for_stop(duration: float | None) -> str:
    """Until SIGINT/SIGTERM or the duration; return why."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reason = ["duration reached"]

    def on_signal(name: str) -> None:
        reason[0] = name
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still works
            loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    return reason[0]


async def run(args: argparse.Namespace) -> int:
    """Run the service."""
    from sensorhub.service import Service, freeze_startup_heap, state_paths

    config = ServiceConfig.load(args.config).with_overrides(
        broker_url=args.broker,
        state_dir=args.state_dir,
        ble=args.ble,
        hub_name=args.hub_name,
        live_rate_hz=args.live_rate,
        exercise=args.exercise,
        auto_start=False if args.no_session else None,
    )
    say = say_on_stderr
    async with view_for(args, f"sensorhub {config.hub_name}") as view:
        async with Service(config, view=view, say=say) as service:
            freeze_startup_heap()
            say(f"hub {config.hub_name!r} running; MQTT broker {service.broker_display}")
            say(f"state in {service.state_dir}; stop with Ctrl-C")
            reason = await wait_for_stop(args.duration)
            say(f"stopping ({reason})")
            session = service.session
        if session is not None:
            paths = state_paths(service.state_dir)
            say(
                f"session {session.id} stored in {paths['sessions']}: "
                f"{session.sets} sets, {session.reps} reps"
            )
    return 0


def say_on_stderr(line: str) -> None:
    """Progress for people, on stderr (stdout stays for results)."""
    print(line, file=sys.stderr, flush=True)
