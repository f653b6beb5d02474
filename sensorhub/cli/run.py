"""``sensorhub run``: the service, until SIGINT, SIGTERM or SIGHUP (or ``--duration``)."""

# ruff: noqa: PLC0415 - the service (Bumble, MQTT, the analysis, rich) is imported when it runs

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sensorhub.cli.sensors import _ble_arg, seconds_arg
from sensorhub.config import EXERCISES, ServiceConfig

if TYPE_CHECKING:
    from sensorhub.service import RecordSink, Service


def add_parser(commands: Any) -> None:
    """Add the sub-command to the CLI."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run the hub: sensors, analysis, MQTT, session recording",
        description="Run the hub service until interrupted (SIGINT, SIGTERM or SIGHUP end it "
        "cleanly: "
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


STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""Each asks for a clean stop: Ctrl-C, a service manager, the terminal closing."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP, caught from entry to exit: each asks for a clean stop.

    Caught from the start, so one that comes while the hub is still starting is not lost
    (by default SIGTERM and SIGHUP would end the process at once, its session left open):
    the hub stops cleanly as soon as it is up. A second one stops it at once, as a
    second Ctrl-C does.
    """

    def __init__(self, say: Callable[[str], None] = lambda _line: None) -> None:
        self._say = say
        self._stop = asyncio.Event()
        self._reason: str | None = None
        self._waiting = False

    def __enter__(self) -> StopSignals:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still works
                loop.add_signal_handler(sig, self._on_signal, sig.name)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)

    def _on_signal(self, name: str) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt  # asked twice: out of the event loop, as Ctrl-C does
        self._reason = name
        self._stop.set()
        if not self._waiting:
            self._say(f"{name}: stopping as soon as the hub has started (again to stop at once)")

    async def wait(self, duration: float | None) -> str:
        """Until a signal or the duration (None: no end); return why."""
        self._waiting = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await self._stop.wait()
        return self._reason or "duration reached"


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
    with StopSignals(say) as stop:
        async with (
            view_for(args, f"sensorhub {config.hub_name}") as view,
            Service(config, view=view, say=say) as service,
        ):
            freeze_startup_heap()
            say(f"hub {config.hub_name!r} running; MQTT broker {service.broker_display}")
            say(f"state in {service.state_dir}; stop with Ctrl-C")
            if not service.registry.load():
                say(_how_to_pair(args, service))
            reason = await stop.wait(args.duration)
            say(f"stopping ({reason})")
            session = service.session
        if session is not None:
            paths = state_paths(service.state_dir)
            say(
                f"session {session.id} stored in {paths['sessions']}: "
                f"{session.sets} sets, {session.reps} reps"
            )
    return 0


def _how_to_pair(args: argparse.Namespace, service: Service) -> str:
    """What to say when no sensor is registered: the hub would wait for nothing."""
    options = ""
    if args.ble is not None:
        options += f" --ble {shlex.quote(args.ble)}"
    if args.state_dir is not None:
        options += f" --state-dir {shlex.quote(str(args.state_dir))}"
    return (
        f"no sensor is registered in {service.state_dir}: find one with `sensorhub scan"
        f"{options}` and pair it with `sensorhub pair ADDRESS --role bar|pelvis --athlete "
        f"NAME{options}` (or the pair command on {service.publisher.topics.commands}); "
        "this hub picks it up while it runs"
    )


def say_on_stderr(line: str) -> None:
    """Progress for people, on stderr (stdout stays for results)."""
    print(line, file=sys.stderr, flush=True)
