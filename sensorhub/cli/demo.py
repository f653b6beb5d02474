"""``sensorhub demo``: the whole product on virtual sensors, in one command.

One athlete wears a bar sensor and a pelvis sensor (virtual, on an in-process radio,
speaking the real Bluetooth protocol); the hub pairs them, records a scripted session of
three short hip-thrust sets (a rest-pause, a velocity-loss alert, a set that tips into
anterior tilt), publishes everything over MQTT (an embedded broker unless ``--broker``
is given) and shows it live. It ends by itself and says where the session is stored.

The demo keeps its own state directory (``<state>/demo``): its virtual sensors are new
at every run, so their registry and bonds are reset each time; its sessions are kept.
"""

# ruff: noqa: PLC0415 - the service and the virtual sensors (Bumble) are imported when it runs

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sensorhub.cli.run import StopSignals, add_service_options, say_on_stderr, view_for
from sensorhub.config import AthleteSettings, ServiceConfig
from sensorhub.state import default_state_dir, ensure_state_dir

if TYPE_CHECKING:
    from sensorhub.service import SessionInfo

ATHLETE: Final = "Demo"
DEMO_SET_GAP_S: Final = 10.0
"""The demo scenario rests 14 s between sets and pauses 6 s inside one."""
SETTLE_S: Final = 3.0
"""After the last rep: time for the set to close (beyond the set gap) before stopping."""


def add_parser(commands: Any) -> None:
    """Add the sub-command to the CLI."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="the live demo: virtual sensors, the full service, an MQTT broker",
        description="Pair two virtual sensors (bar and pelvis), record a scripted hip-thrust "
        "session of about a minute with live metrics over MQTT, then say how to export it.",
    )
    add_service_options(parser)
    parser.add_argument(
        "--scenario", default="demo", help="a preset or a scenario TOML file (default: demo)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the virtual sensors")
    parser.set_defaults(run=run)


def _demo_state_dir(args: argparse.Namespace) -> Path:
    # The default lives inside the hub's own state directory: that one is made (private)
    # first, or creating the demo's would make it with the default mode.
    state_dir = ensure_state_dir(args.state_dir or ensure_state_dir(default_state_dir()) / "demo")
    for stale in ("sensors.json", "bonds.json"):
        (state_dir / stale).unlink(missing_ok=True)
    return state_dir


async def run(args: argparse.Namespace) -> int:
    """Run the demo session."""
    from firmware_protocol.virtual.emulator import Emulator
    from firmware_protocol.virtual.radio import VirtualRadio
    from sensorhub.ble.radio import Radio
    from sensorhub.cli.emulate import load_scenario
    from sensorhub.service import Service, freeze_startup_heap

    scenario = load_scenario(args.scenario)
    state_dir = _demo_state_dir(args)
    first_load = scenario.sets[0].load_kg if scenario.exercise != "bodyweight_hip_thrust" else None
    config = ServiceConfig(
        hub_name="demo",
        ble="virtual",
        state_dir=state_dir,
        broker_url=args.broker,
        auto_start=False,
        set_gap_s=DEMO_SET_GAP_S if args.scenario == "demo" else 45.0,
        exercise=scenario.exercise,
        athletes={ATHLETE: AthleteSettings(scenario.exercise, first_load)},
        live_rate_hz=args.live_rate or 10.0,
        source="sensorhub demo",
    )
    say = say_on_stderr
    radio = VirtualRadio()
    session: SessionInfo | None = None
    with StopSignals(say) as stop:
        async with Emulator(scenario, seed=args.seed, radio=radio) as emulator:
            duration = args.duration
            if duration is None:
                duration = emulator.trajectory.duration_s + config.set_gap_s + SETTLE_S
            ends_at = time.monotonic() + duration
            async with (
                Radio.on_virtual_radio(radio, state_dir=state_dir) as hub_radio,
                view_for(args, "sensorhub demo") as view,
                Service(config, radio=hub_radio, view=view, say=say) as service,
            ):
                freeze_startup_heap()
                say(f"MQTT broker {service.broker_display}; topics under sensorhub/demo/#")
                # The pelvis first: its neutral hold falls in the scenario's opening bridge.
                for sensor in sorted(emulator.sensors, key=lambda s: s.body != "pelvis"):
                    await service.hub.pair(
                        sensor.firmware.address,
                        role=sensor.body,
                        athlete=ATHLETE,
                        name=f"demo {sensor.body}",
                        progress=_progress(say, sensor.body),
                    )
                session = service.start_session(note=f"sensorhub demo ({scenario.name})")
                left = max(0.0, ends_at - time.monotonic())
                say(f"recording session {session.id}; {left:.0f} s to go")
                await stop.wait(max(0.0, ends_at - time.monotonic()))
    assert session is not None
    _summary(session, state_dir)
    return 0


def _progress(say: Callable[[str], None], body: str) -> Callable[[str], None]:
    return lambda line: say(f"pairing the {body} sensor: {line}")


def _summary(session: SessionInfo, state_dir: Path) -> None:
    from sensorhub.service import state_paths

    paths = state_paths(state_dir)
    state = shlex.quote(str(state_dir))
    print(
        f"\nSession {session.id}: {session.sets} sets, {session.reps} reps, stored in "
        f"{paths['sessions']}\n"
        f"  show it:    sensorhub sessions show {session.id} --state-dir {state}\n"
        f"  export it:  sensorhub export {session.id} --format csv --out ./export "
        f"--state-dir {state}\n"
        "  (from a clone without the command installed: python3 run.py sensorhub …)"
    )
