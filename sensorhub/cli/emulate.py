"""``sensorhub emulate``: virtual sensors that hubs in other processes reach over HCI."""

# ruff: noqa: PLC0415 - the emulator (Bumble) is imported when it runs

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware_protocol.virtual.scenario import Scenario
from sensorhub.errors import ConfigError

if TYPE_CHECKING:
    from firmware_protocol.virtual.emulator import Emulator


def seconds_or_zero(value: str) -> float:
    """A length of time on the command line: a number of seconds, 0 or more."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")
    return seconds


def load_scenario(name_or_path: str) -> Scenario:
    """The scenario ``--scenario`` names: a preset or a TOML file (ConfigError if neither)."""
    from firmware_protocol import FirmwareProtocolError

    try:
        return Scenario.from_name_or_path(name_or_path)
    except FirmwareProtocolError as exc:
        raise ConfigError(f"--scenario: {exc}") from exc


def add_parser(commands: Any) -> None:
    """Add the sub-command to the CLI."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "emulate",
        help="run virtual sensors on a virtual radio",
        description=(
            "Run virtual sensors playing a scenario. Hubs reach them over HCI-over-TCP, "
            "e.g. `sensorhub scan --ble tcp-client:127.0.0.1:7001`; each hub that connects "
            "gets a radio of its own on the shared virtual link."
        ),
    )
    parser.add_argument(
        "--hci",
        default="tcp-server:127.0.0.1:7001",
        help="where hubs reach the radio (default: %(default)s)",
    )
    parser.add_argument(
        "--scenario",
        default="hip_thrust",
        help=f"a preset ({', '.join(Scenario.presets())}) or a scenario TOML file",
    )
    parser.add_argument(
        "--duration",
        type=seconds_or_zero,
        default=0.0,
        help="seconds to run, then exit (default: until interrupted)",
    )
    parser.add_argument("--seed", type=int, default=1, help="sensor identities and noise")
    parser.add_argument("--truth", type=Path, help="write the ground truth here (JSON Lines)")
    parser.add_argument(
        "--bar-velocity",
        action="store_true",
        help="add a bar-velocity (position transducer) sensor on the bar",
    )
    parser.add_argument(
        "--athletes",
        type=int,
        default=1,
        metavar="N",
        help="play the scenario on N athletes at once, each with sensors of their own "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--pairing-window",
        type=seconds_or_zero,
        default=0.0,
        metavar="S",
        help="every sensor accepts new bonds for S seconds after power-on, bonded or not "
        "(default 0: until its first bond; SIGUSR1 puts every sensor in pairing mode for a "
        "minute, as its button would)",
    )
    parser.add_argument(
        "--bonds",
        type=Path,
        metavar="FILE",
        help="keep the sensors' bonds in this JSON file, as real sensors keep them in flash: "
        "sensors of an emulator restarted with the same seed still know their hubs "
        "(default: in memory, forgotten on exit)",
    )
    parser.add_argument("--quiet", action="store_true", help="no status lines")
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Run the emulator until the duration ends or a signal arrives."""
    from firmware_protocol import FirmwareProtocolError
    from firmware_protocol.virtual.emulator import Emulator
    from firmware_protocol.virtual.firmware import PAIRING_BUTTON_S

    scenario = load_scenario(args.scenario)
    if not 1 <= args.athletes <= 1000:
        raise ConfigError(f"--athletes {args.athletes}: give 1 to 1000")
    emulator = Emulator(
        scenario,
        seed=args.seed,
        bar_velocity=args.bar_velocity,
        athletes=args.athletes,
        pairing_window_s=args.pairing_window,
        bonds=args.bonds,
    )
    say = (lambda *_: None) if args.quiet else _printer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def press_buttons() -> None:
        pressed = emulator.press_buttons()
        say(f"SIGUSR1: {len(pressed)} sensors in pairing mode for {PAIRING_BUTTON_S:g} s")

    if hasattr(signal, "SIGUSR1"):
        loop.add_signal_handler(signal.SIGUSR1, press_buttons)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(emulator)
        try:
            server = await stack.enter_async_context(emulator.radio.serve_hci(args.hci))
        except FirmwareProtocolError as exc:  # not a moniker we serve, or the port is taken
            raise ConfigError(f"--hci: {exc}") from exc
        if args.truth:
            emulator.write_truth(args.truth)
        say(f"virtual radio listening on tcp-client:{server.host}:{server.port}")
        say(f"scenario {scenario.name!r} ({scenario.exercise}), seed {args.seed}")
        for sensor in emulator.describe():
            address, name, kind = sensor["address"], sensor["name"], sensor["kind"]
            wearer = f" of athlete {sensor['athlete'] + 1}" if args.athletes > 1 else ""
            say(f"  {address}  {name:<12} {kind:<12} on {sensor['body']}{wearer}")
        if args.truth:
            say(f"ground truth written to {args.truth}")
        await _wait(stop, args.duration, emulator, say)
    return 0


def _printer() -> Any:
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return say


async def _wait(stop: asyncio.Event, duration: float, emulator: Emulator, say: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration if duration > 0 else None
    last_report = loop.time()
    while not stop.is_set():
        timeout = 1.0 if deadline is None else min(1.0, deadline - loop.time())
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout)
        if loop.time() - last_report >= 10:
            last_report = loop.time()
            parts = []
            for sensor in emulator.sensors:
                counters = sensor.firmware.counters
                state = "connected" if sensor.firmware.connected else "advertising"
                name = sensor.firmware.profile.display_name
                parts.append(f"{name}: {state}, {counters.frames_sent} frames")
            say("; ".join(parts))
