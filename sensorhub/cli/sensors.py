"""``sensorhub scan``, ``pair`` and ``sensors``: finding, pairing and managing sensors."""

# ruff: noqa: PLC0415 - the radio (bleak, Bumble) and rich are imported by the commands using them

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorhub.ble.spec import BLE_HELP, check_ble_spec
from sensorhub.errors import BluetoothError, ConfigError
from sensorhub.registry import ROLES, SensorRegistry, check_address
from sensorhub.state import default_state_dir, ensure_state_dir

if TYPE_CHECKING:
    from rich.table import Table

    from sensorhub.pairing import Sighting


def add_common(parser: argparse.ArgumentParser, *, radio: bool = True) -> None:
    """Options every command that touches the hub's state (and radio) takes."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where registry, bonds and sessions live (default: $SENSORHUB_STATE_DIR or "
        f"{default_state_dir()})",
    )
    if radio:
        parser.add_argument("--ble", default="native", type=_ble_arg, help=BLE_HELP)


def _ble_arg(value: str) -> str:
    try:
        return check_ble_spec(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def address_arg(value: str) -> str:
    """A sensor's address on the command line, checked before anything waits for it."""
    try:
        return check_address(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds_arg(value: str) -> float:
    """A length of time on the command line: a number of seconds above 0."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0, e.g. 15")
    return seconds


def state_dir(args: argparse.Namespace) -> Path:
    """The state directory the arguments ask for, created if need be."""
    return ensure_state_dir(args.state_dir or default_state_dir())


def add_parsers(commands: Any) -> None:
    """Add scan, pair and sensors to the CLI."""
    scan = commands.add_parser("scan", help="find sensors nearby")
    add_common(scan)
    scan.add_argument(
        "--duration", type=seconds_arg, default=5.0, help="seconds to listen (default 5)"
    )
    scan.add_argument("--json", action="store_true", help="print a JSON array and exit")
    scan.set_defaults(run=run_scan)

    pair = commands.add_parser(
        "pair",
        help="bond with a sensor, identify it, calibrate it, give it a role",
        description="Pair a sensor: it blinks so you can confirm it is the one in your hand; "
        "a pelvis sensor then records the neutral pose (hold still when asked).",
    )
    add_common(pair)
    pair.add_argument("address", type=address_arg, help="the sensor's address, as scan shows it")
    pair.add_argument("--role", required=True, choices=ROLES)
    pair.add_argument("--athlete", required=True, help="who wears or lifts with it")
    pair.add_argument("--name", default="", help="a name for people (default: role + athlete)")
    pair.add_argument(
        "--timeout", type=seconds_arg, default=15.0, help="seconds to look for it (default 15)"
    )
    pair.set_defaults(run=run_pair)

    sensors = commands.add_parser("sensors", help="list, forget or rename registered sensors")
    actions = sensors.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the registered sensors")
    add_common(listing, radio=False)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=run_list)
    forget = actions.add_parser("forget", help="remove a sensor and delete its bond")
    add_common(forget)
    forget.add_argument("address", type=address_arg)
    forget.set_defaults(run=run_forget)
    rename = actions.add_parser("rename", help="give a sensor a name")
    add_common(rename, radio=False)
    rename.add_argument("address", type=address_arg)
    rename.add_argument("name")
    rename.set_defaults(run=run_rename)


def _sightings_table(found: dict[str, Sighting]) -> Table:
    from rich.table import Table

    table = Table(title="sensors nearby", expand=False)
    table.add_column("address", no_wrap=True, min_width=17)  # people copy it whole
    for column in ("name", "kind", "battery", "rssi", "pairing", "paired"):
        table.add_column(column)
    for sighting in sorted(found.values(), key=lambda s: -s.rssi):
        table.add_row(
            sighting.address,
            sighting.name or "",
            sighting.kind.name.lower(),
            f"{sighting.battery_pct} %",
            f"{sighting.rssi} dBm",
            "yes" if sighting.pairing_mode else "no",
            "yes" if sighting.paired else "no",
        )
    return table


async def run_scan(args: argparse.Namespace) -> int:
    """List our sensors nearby, live in a terminal, or as JSON."""
    from rich.console import Console
    from rich.live import Live

    from sensorhub.ble.radio import Radio
    from sensorhub.pairing import discover

    registry = SensorRegistry(state_dir(args) / "sensors.json")
    async with Radio(args.ble, state_dir=state_dir(args)) as radio:
        if args.json or not sys.stdout.isatty():
            found = await discover(radio, registry, args.duration)
            if args.json:
                print(json.dumps([s.to_json() for s in found.values()], indent=2))
            else:
                Console().print(_sightings_table(found))
            return 0
        with Live(_sightings_table({}), refresh_per_second=4) as live:
            found = await discover(
                radio, registry, args.duration, lambda seen: live.update(_sightings_table(seen))
            )
            live.update(_sightings_table(found))
    if not found:
        print("no sensors heard: are they on and in range?", file=sys.stderr)
    return 0


async def run_pair(args: argparse.Namespace) -> int:
    """Pair one sensor and register it."""
    from sensorhub.ble.radio import Radio
    from sensorhub.pairing import pair_sensor

    directory = state_dir(args)
    registry = SensorRegistry(directory / "sensors.json")
    async with Radio(args.ble, state_dir=directory) as radio:
        entry = await pair_sensor(
            radio,
            registry,
            args.address,
            role=args.role,
            athlete=args.athlete,
            name=args.name,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            find_timeout=args.timeout,
        )
    print(json.dumps(entry.to_json(), indent=2))
    return 0


async def run_list(args: argparse.Namespace) -> int:
    """Print the registered sensors."""
    from rich.console import Console
    from rich.table import Table

    sensors = SensorRegistry(state_dir(args) / "sensors.json").load()
    if args.json:
        print(json.dumps([s.to_json() for s in sensors.values()], indent=2))
        return 0
    if not sensors:
        print("no sensors registered yet: `sensorhub scan`, then `sensorhub pair ADDRESS`")
        return 0
    table = Table(title="registered sensors")
    table.add_column("address", no_wrap=True, min_width=17)
    for column in ("name", "kind", "role", "athlete", "paired at"):
        table.add_column(column)
    for sensor in sensors.values():
        table.add_row(
            sensor.address, sensor.label, sensor.kind, sensor.role, sensor.athlete, sensor.paired_at
        )
    Console().print(table)
    return 0


async def run_forget(args: argparse.Namespace) -> int:
    """Remove a sensor from the registry and delete its bond."""
    from sensorhub.ble.radio import Radio

    directory = state_dir(args)
    removed = SensorRegistry(directory / "sensors.json").forget(args.address)
    print(f"forgot {removed.label} ({removed.address})")
    try:
        async with Radio(args.ble, state_dir=directory) as radio:
            await radio.forget_bond(removed.address)
    except BluetoothError as exc:
        print(
            f"warning: the bond could not be deleted ({exc}); the hub will not connect "
            "to it, and pairing it again replaces the bond",
            file=sys.stderr,
        )
    return 0


async def run_rename(args: argparse.Namespace) -> int:
    """Rename a sensor."""
    renamed = SensorRegistry(state_dir(args) / "sensors.json").rename(args.address, args.name)
    print(f"{renamed.address} is now {renamed.label!r}")
    return 0
