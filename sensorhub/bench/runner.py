"""Running the benchmark: the options, and the three parts side by side in one run."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_protocol.virtual.scenario import Scenario
from sensorhub.bench import PARTS
from sensorhub.bench.broker import bench_broker
from sensorhub.bench.latency import latency_scenario, measure_latency
from sensorhub.bench.pipeline import make_frames, measure_pipeline
from sensorhub.bench.report import summarise
from sensorhub.bench.scale import ScaleResult, measure_scale

__all__ = ["BenchOptions", "machine_info", "run_bench"]


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure and for how long."""

    sensors: tuple[int, ...] = (1, 10, 40)
    soak_s: float = 600.0
    pipeline_seconds: float | None = None
    """Seconds of the hip-thrust scenario to push through the pipeline (None: all of it)."""
    pipeline_repeats: int = 5
    latency_sets: int = 4
    latency_reps: int = 8
    """32 reps: a p99 of a dozen would be the largest one."""
    warmup_s: float = 10.0
    window_s: float = 30.0
    parts: frozenset[str] = field(default_factory=lambda: frozenset(PARTS))
    keep_logs: bool = False
    """Keep the working directory (hub and emulator logs) even when all went well."""

    @classmethod
    def quick(cls, **changes: Any) -> BenchOptions:
        """Short everything: for CI, a minute or so."""
        values: dict[str, Any] = {
            "sensors": (1, 4),
            "soak_s": 6.0,
            "pipeline_seconds": 40.0,
            "pipeline_repeats": 2,
            "latency_sets": 1,
            "latency_reps": 3,
            "warmup_s": 2.0,
            "window_s": 5.0,
        }
        values.update(changes)
        return cls(**values)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken: cores, Python, platform, load when the run began."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average_1m": None if load is None else round(load[0], 2),
    }


async def run_bench(
    options: BenchOptions, *, say: Callable[[str], None] = lambda _line: None
) -> dict[str, Any]:
    """Run the chosen measurements; return the summary object (figures, targets, machine)."""
    started = time.monotonic()
    machine = machine_info()
    pipeline = latency = broker_kind = None
    scale: dict[int, ScaleResult] = {}
    workdir = Path(tempfile.mkdtemp(prefix="sensorhub-bench-"))
    try:
        if "pipeline" in options.parts:
            say("pipeline: making frames…")
            stream = make_frames(Scenario.preset("hip_thrust"), duration_s=options.pipeline_seconds)
            say(f"pipeline: {stream.samples} samples in {len(stream.frames)} frames, timing…")
            pipeline = measure_pipeline(stream, repeats=options.pipeline_repeats)
        if {"latency", "scale"} & options.parts:
            async with bench_broker(workdir) as broker:
                broker_kind = broker.kind
                if broker.kind != "mosquitto":
                    say("mosquitto is not installed: the embedded broker (amqtt) stands in")
                if "latency" in options.parts:
                    say("latency: one session through the whole service…")
                    latency = await measure_latency(
                        latency_scenario(sets=options.latency_sets, reps=options.latency_reps),
                        workdir=workdir,
                        broker_url=broker.url,
                        broker_port=broker.port,
                        broker_kind=broker.kind,
                    )
                if "scale" in options.parts:
                    scale = await measure_scale(
                        list(options.sensors),
                        workdir=workdir,
                        broker_url=broker.url,
                        broker_port=broker.port,
                        warmup_s=options.warmup_s,
                        window_s=options.window_s,
                        soak_s=options.soak_s,
                        say=say,
                    )
    except BaseException:
        say(f"the logs of this run are kept in {workdir}")
        raise
    if options.keep_logs:
        say(f"the logs of this run are in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return summarise(
        pipeline=pipeline,
        latency=latency,
        scale=scale,
        broker=broker_kind,
        machine=machine,
        duration_s=time.monotonic() - started,
    )
