"""``sensorhub demo``: virtual sensors on an in-process radio, paired and streaming.

The whole sensor side runs for real over the virtual radio: advertising, bonding, an
encrypted link, commands and data frames; a plain Bumble central stands in for the hub
and prints what each sensor delivers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from firmware_protocol import (
    BarDataFrame,
    Frame,
    ImuDataFrame,
    SetConfig,
    StartStreaming,
    StatusFrame,
    StopStreaming,
    TimeSync,
)
from firmware_protocol.frames import SensorKind
from firmware_protocol.virtual.central import ReferenceCentral
from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.scenario import Scenario


def add_parser(commands: Any) -> None:
    """Add the sub-command to the CLI."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="virtual sensors, paired and streaming, in one process",
        description="Run virtual sensors on an in-process radio, pair with them and stream.",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (default: 30)")
    parser.add_argument("--scenario", default="hip_thrust", help="a preset or a TOML file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=int, default=200, help="IMU sample rate, Hz")
    parser.set_defaults(run=run)


@dataclass
class _Tally:
    name: str
    frames: int = 0
    samples: int = 0
    gaps: int = 0
    last_seq: int | None = None
    battery: int | None = None
    peak_accel: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, ImuDataFrame | BarDataFrame):
            if self.last_seq is not None and frame.seq != (self.last_seq + 1) & 0xFFFF:
                self.gaps += 1
            self.last_seq = frame.seq
            self.frames += 1
            self.samples += frame.count
            if isinstance(frame, ImuDataFrame):
                magnitude = float((frame.accel**2).sum(axis=1).max() ** 0.5)
                self.peak_accel = max(self.peak_accel, magnitude)

    def line(self) -> str:
        rate = self.samples / max(1e-9, time.monotonic() - self.started)
        return (
            f"{self.name:<12} {self.frames:6d} frames {self.samples:7d} samples "
            f"{rate:6.1f} Hz  gaps {self.gaps}  peak |a| {self.peak_accel:5.1f} m/s²"
        )


async def run(args: argparse.Namespace) -> int:
    """Pair with every virtual sensor, stream for the duration, print a summary."""
    scenario = Scenario.from_name_or_path(args.scenario)
    async with Emulator(scenario, seed=args.seed, bar_velocity=True) as emulator:
        hub = emulator.radio.new_device(name="demo-hub", address="C0:DE:00:00:00:01")
        async with ReferenceCentral(hub) as central:
            print(f"scenario {scenario.name!r}: scanning…", file=sys.stderr)
            sightings = await central.scan(1.5)
            tallies = []
            links = []
            for address, sighting in sorted(sightings.items()):
                tally = _Tally(sighting.name or address)
                link = await central.connect(address)
                await link.pair()
                await link.enable_commands()
                await link.subscribe_data(tally.on_frame)
                if sighting.advertisement.kind is SensorKind.IMU:
                    await link.command(SetConfig(0, args.rate, 16, 2000))
                sync = await link.command(TimeSync(0))
                await link.command(StartStreaming(0))
                synced = "ok" if sync.ok else "failed"
                print(
                    f"paired {address} ({sighting.name}, battery "
                    f"{sighting.advertisement.battery_pct} %, time sync {synced})",
                    file=sys.stderr,
                )
                tallies.append(tally)
                links.append(link)
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
                for link, tally in zip(links, tallies, strict=True):
                    status = await link.read_status()
                    if isinstance(status, StatusFrame):
                        tally.battery = status.battery_pct
                print(" | ".join(t.line() for t in tallies), file=sys.stderr)
            for link in links:
                await link.command(StopStreaming(0))
    for tally in tallies:
        print(tally.line())
    return 0
