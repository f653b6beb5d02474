"""``sensorhub sessions``, ``export`` and ``replay``: what the session store holds."""

# ruff: noqa: PLC0415 - the store, MQTT and rich are imported by the commands that use them

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorhub.cli.sensors import add_common
from sensorhub.config import PASSWORD_ENV
from sensorhub.errors import MqttError, StateError
from sensorhub.state import default_state_dir
from sensorhub.store import FORMATS

if TYPE_CHECKING:
    from rich.console import Console

    from sensorhub.records import Record
    from sensorhub.store import RecordSink, SessionStore

PUBLISH_TIMEOUT_S = 30.0


def add_parsers(commands: Any) -> None:
    """Add sessions, export and replay to the CLI."""
    sessions = commands.add_parser("sessions", help="list and show recorded sessions")
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every recorded session")
    add_common(listing, radio=False)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="one session's sets and reps with their metrics")
    add_common(show, radio=False)
    show.add_argument("session", type=int, metavar="SESSION", help="the id `sessions list` shows")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(run=run_show)

    export = commands.add_parser(
        "export",
        help="write a session's reps, sets and alerts (and raw samples) to files",
        description="Write session-<id>-reps, -sets and -alerts files (columns as in the MQTT "
        "payloads, SI units, Unix times) and session-<id>.json; with --raw also -samples, "
        "one row per sample decoded from the stored frames.",
    )
    add_common(export, radio=False)
    export.add_argument("session", type=int, metavar="SESSION")
    export.add_argument("--format", choices=FORMATS, default="csv", help="default csv")
    export.add_argument("--out", type=Path, required=True, help="directory (created)")
    export.add_argument("--raw", action="store_true", help="also every sample")
    export.set_defaults(run=run_export)

    replay = commands.add_parser(
        "replay",
        help="run a session's recorded frames through the analysis again",
        description="Re-analyse a recorded session from its raw frames, with the session's "
        "exercise, load and sensors, and print the reps and sets found.",
    )
    add_common(replay, radio=False)
    replay.add_argument("session", type=int, metavar="SESSION")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.add_argument(
        "--publish",
        metavar="URL",
        help="also publish the reps, sets and alerts found to this MQTT broker (mqtt://…, "
        "mqtts://…; password from $SENSORHUB_MQTT_PASSWORD), as a hub would",
    )
    replay.add_argument(
        "--hub-name",
        default="replay",
        help="the hub level of the published topics (default: replay, so live dashboards "
        "of the real hub are not confused)",
    )
    replay.add_argument("--prefix", default="sensorhub", help="topic prefix (default: sensorhub)")
    replay.set_defaults(run=run_replay)


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[SessionStore]:
    from sensorhub.store import SessionStore

    # Reading needs no write access: the state directory is not created or checked here.
    directory = args.state_dir or default_state_dir()
    path = SessionStore.path_in(directory)
    if not path.is_file():
        demo = default_state_dir() / "demo"
        hint = (
            f"the demo keeps its sessions apart, in {demo}: "
            f"`sensorhub sessions list --state-dir {shlex.quote(str(demo))}`"
            if Path(directory).resolve() != demo.resolve()
            else "run `sensorhub demo` to record one"
        )
        raise StateError(
            f"no session store at {path}: nothing has been recorded there yet (check "
            f"--state-dir); {hint}"
        )
    store = SessionStore.open_readonly(path)
    try:
        yield store
    finally:
        store.close()


def _status(entry: dict[str, Any]) -> str:
    if entry["ended"] is not None:
        return str(entry["ended"])
    return "interrupted" if entry["interrupted"] else "recording"


def _when(iso_time: str) -> str:
    """``2026-11-24T05:01:02.123Z`` as ``2026-11-24 05:01:02`` (UTC), for a narrow table."""
    return iso_time[:19].replace("T", " ")


def _length(entry: dict[str, Any]) -> str:
    if entry["ended"] is None:
        return "interrupted" if entry["interrupted"] else "recording"
    started = datetime.fromisoformat(entry["started"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(entry["ended"].replace("Z", "+00:00"))
    minutes = (ended - started).total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{minutes * 60:.0f} s"


def _number(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


async def run_list(args: argparse.Namespace) -> int:
    """Print every session."""
    from rich.console import Console
    from rich.table import Table

    with _store(args) as store:
        sessions = store.sessions()
    if args.json:
        print(json.dumps(sessions, indent=2))
        return 0
    if not sessions:
        print("no sessions recorded yet")
        return 0
    table = Table(title="sessions (times UTC)")
    for column in ("id", "started", "length", "athletes", "sets", "reps", "note"):
        table.add_column(column, no_wrap=column in {"id", "started", "length"})
    for entry in sessions:
        athletes = ", ".join(
            f"{name} ({exercise})" for name, exercise in entry["exercises"].items()
        )
        table.add_row(
            str(entry["id"]),
            _when(entry["started"]),
            _length(entry),
            athletes,
            str(entry["sets"]),
            f"{entry['reps']}"
            + (f" (+{entry['partial_reps']} partial)" if entry["partial_reps"] else ""),
            entry["note"],
        )
    Console().print(table)
    return 0


async def run_show(args: argparse.Namespace) -> int:
    """Print one session with its sets and reps."""
    from rich.console import Console

    with _store(args) as store:
        info = store.session(args.session)
        sets, reps, alerts = (
            store.sets(args.session),
            store.reps(args.session),
            store.alerts(args.session),
        )
    if args.json:
        print(json.dumps({**info, "sets": sets, "reps": reps, "alerts": alerts}, indent=2))
        return 0
    console = Console()
    console.print(
        f"session {info['id']}: started {info['started']}, ended {_status(info)}"
        + (f" — {info['note']}" if info["note"] else "")
    )
    for athlete in info["athletes"]:
        load = "" if athlete["load_kg"] is None else f", {athlete['load_kg']:g} kg"
        console.print(f"{athlete['athlete']}: {athlete['exercise']}{load}")
    for sensor in info["sensors"]:
        console.print(
            f"  sensor {sensor['address']} ({sensor['kind']}, {sensor['role']}, "
            f"{sensor['athlete']}): {sensor['frames']} frames"
        )
    _print_sets(console, sets, reps)
    for alert in alerts:
        console.print(f"alert {alert['ts']} {alert['athlete']}: {alert['message']}")
    return 0


def _print_sets(console: Console, sets: list[Record], reps: list[Record]) -> None:
    from rich.table import Table

    table = Table(title="sets")
    for column in ("athlete", "set", "reps", "best MCV m/s", "mean MCV m/s", "loss %", "rest s"):
        table.add_column(column)
    for entry in sets:
        table.add_row(
            entry["athlete"],
            str(entry["set_index"]),
            str(entry["rep_count"]),
            _number(entry["best_mcv_mps"]),
            _number(entry["mean_mcv_mps"]),
            _number(entry["velocity_loss_pct"], 1),
            _number(entry["rest_before_s"], 0),
        )
    console.print(table)
    table = Table(title="reps")
    columns = ("athlete", "set", "rep", "MCV m/s", "peak m/s", "ROM cm", "power W", "tilt")
    for column in columns:
        table.add_column(column)
    for rep in reps:
        rom = None if rep["rom_m"] is None else rep["rom_m"] * 100
        tilt = rep["tilt_verdict"] or ""
        table.add_row(
            rep["athlete"],
            str(rep["set_index"]),
            f"{rep['rep_in_set']}{' (partial)' if rep['partial'] else ''}",
            _number(rep["mcv_mps"]),
            _number(rep["peak_velocity_mps"]),
            _number(rom, 1),
            _number(rep["mean_power_w"], 0),
            tilt,
        )
    console.print(table)


async def run_export(args: argparse.Namespace) -> int:
    """Write a session's files and print their paths."""
    from sensorhub.store import export_session

    with _store(args) as store:
        written = export_session(store, args.session, args.out, args.format, raw=args.raw)
    for path in written:
        print(path)
    return 0


async def run_replay(args: argparse.Namespace) -> int:
    """Re-analyse a session, print what it finds, and publish it if asked."""
    if args.publish is None:
        records = _replay(args, sinks=[])
    else:
        records = await _replay_and_publish(args)
    if args.json:
        reps = [r for r in records if r["type"] == "rep"]
        sets = [r for r in records if r["type"] == "set"]
        alerts = [r for r in records if r["type"] == "alert"]
        print(json.dumps({"session": args.session, "reps": reps, "sets": sets, "alerts": alerts}))
        return 0
    sets_found = sum(1 for r in records if r["type"] == "set")
    reps_found = sum(1 for r in records if r["type"] == "rep")
    print(f"session {args.session}: {sets_found} set(s), {reps_found} rep(s)", file=sys.stderr)
    return 0


def _replay(
    args: argparse.Namespace, sinks: list[RecordSink], *, with_states: bool = False
) -> list[Record]:
    """The session's reps, sets and alerts found again (printed unless ``--json``); with
    ``with_states`` the sinks are also given each athlete's state as it changes."""
    from sensorhub.replay import DEFAULT_KINDS, replay_session

    kinds = DEFAULT_KINDS | {"athlete_state"} if with_states else DEFAULT_KINDS
    records: list[Record] = []
    with _store(args) as store:
        for record in replay_session(store, args.session, kinds=kinds, sinks=sinks):
            if record["type"] not in DEFAULT_KINDS:
                continue
            records.append(record)
            if not args.json:
                print(_replay_line(record), flush=True)
    return records


async def _replay_and_publish(args: argparse.Namespace) -> list[Record]:
    """Replay into an MQTT publisher, then wait until the broker has taken every record."""
    from sensorhub.mqtt import BrokerSettings, MqttPublisher, TopicTree

    settings = BrokerSettings.from_url(args.publish, password=os.environ.get(PASSWORD_ENV))
    topics = TopicTree(prefix=args.prefix, hub=args.hub_name)
    with tempfile.TemporaryDirectory(prefix="sensorhub-replay-") as scratch:
        async with MqttPublisher(
            settings,
            topics=topics,
            outbox_path=Path(scratch) / "outbox.db",
            discovery_prefix=None,
            hub_info={"replay_of_session": args.session},
        ) as publisher:

            def publish(record: Record) -> None:
                publisher.publish_record({**record, "session_id": args.session})

            records = _replay(args, sinks=[publish], with_states=True)
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    # The publisher has no drain signal; its counters are cheap to poll.
                    while publisher.stats["queued"] or not publisher.connected:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
            except TimeoutError:
                stats = publisher.stats
                raise MqttError(
                    f"the broker at {settings.redacted()} did not take "
                    f"{stats['queued']} of the replayed records within {PUBLISH_TIMEOUT_S:g} s "
                    f"({stats['last_error'] or 'no answer'})"
                ) from None
    print(
        f"published {len(records)} record(s) under {topics.base}/ on {settings.redacted()}",
        file=sys.stderr,
    )
    return records


def _replay_line(record: Record) -> str:
    if record["type"] == "rep":
        partial = " (partial)" if record["partial"] else ""
        return (
            f"{record['ts']} {record['athlete']} set {record['set_index']} rep "
            f"{record['rep_in_set']}{partial}: MCV {_number(record['mcv_mps'])} m/s, peak "
            f"{_number(record['peak_velocity_mps'])} m/s"
        )
    if record["type"] == "set":
        return (
            f"{record['ts']} {record['athlete']} set {record['set_index']} done: "
            f"{record['rep_count']} reps, best MCV {_number(record['best_mcv_mps'])} m/s, "
            f"velocity loss {_number(record['velocity_loss_pct'], 1)} %"
        )
    return f"{record['ts']} {record['athlete']} alert: {record['message']}"
