"""Scale: the hub process alone with 1, 10, 40 … sensors at 200 Hz; its CPU and memory.

The sensors run in a process of their own (``sensorhub emulate --athletes N``, reached
over HCI-over-TCP, as a real dongle would be over USB), so what is measured is the hub
as users run it: ``sensorhub run`` with its links, analysis, session store and MQTT
publisher. Sensors are paired once, in this process, without the calibration holds (the
bond and the registry entry are what a hub needs to stream; a pelvis without a stored
neutral has it measured over the first seconds of its athlete's analysis). Each sensor
count gets an emulator and a hub of its own.

One emulator process carries all the sensors of a count. Its CPU is read over the same
window: at SATURATED_PCT or more it cannot keep its sensors on time, and the figures say
so rather than pass the hub's off as a measurement at full rate.

CPU is read from ``/proc/<pid>/stat`` (user + system time) over a window after warm-up,
as a percentage of one core; RSS from ``/proc/<pid>/status``. Linux only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt
import numpy as np

from sensorhub.ble.radio import Radio
from sensorhub.errors import ConfigError, MqttError, SensorhubError
from sensorhub.pairing import pair_sensor
from sensorhub.registry import SensorRegistry
from sensorhub.store.db import FILE_NAME

__all__ = ["ProcessSample", "ScaleResult", "SoakResult", "measure_scale", "proc_sample"]

HUB_PREFIX: Final = "bench-scale"
"""Each hub run publishes under a name of its own: no retained status of another counts."""
RATE_HZ: Final = 200
EMULATOR_START_S: Final = 60.0
HUB_STOP_S: Final = 30.0
SATURATED_PCT: Final = 90.0
"""The emulator process at this much of a core or more cannot keep its sensors on time."""
CONNECT_S_PER_SENSOR: Final = 8.0
"""Time allowed per sensor for the hub to connect to all of them (one connection at a time)."""
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One reading of a process's counters from /proc."""

    at: float
    """time.monotonic() of the reading."""
    cpu_s: float
    """User + system CPU time so far, s."""
    rss_mb: float


def proc_sample(pid: int) -> ProcessSample:
    """Read a process's CPU time and RSS now; raise SensorhubError off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError as exc:
        if not Path("/proc/self/stat").exists():
            raise ConfigError(
                "the scale benchmark reads /proc to measure the hub: it runs on Linux only"
            ) from exc
        raise SensorhubError(f"process {pid} is gone: {exc}") from exc
    # Field 2 (the command) may hold spaces and parentheses: count from its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    rss_mb = int(match.group(1)) / 1024 if match else 0.0
    return ProcessSample(time.monotonic(), cpu_s, rss_mb)


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def _tail(path: Path, chars: int = 2000) -> str:
    """The end of a log, for error messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def cpu_pct(first: ProcessSample, last: ProcessSample) -> float:
    """CPU used between two readings, % of one core."""
    wall = last.at - first.at
    return 100.0 * (last.cpu_s - first.cpu_s) / wall if wall > 0 else 0.0


@dataclass
class SoakResult:
    """RSS of the hub sampled over a long run."""

    duration_s: float
    samples_mb: list[tuple[float, float]]
    """(seconds since the soak began, RSS MB)."""
    store_wal_max_mb: float | None = None
    """Largest size of the session store's WAL file seen (it must not grow with the session)."""

    def to_json(self) -> dict[str, Any]:
        """First, last, peak, the fitted slope (MB/min) and the growth it implies."""
        times = np.array([t for t, _ in self.samples_mb])
        rss = np.array([m for _, m in self.samples_mb])
        slope = float(np.polyfit(times, rss, 1)[0]) * 60 if len(times) >= 2 else 0.0
        return {
            "duration_s": round(self.duration_s, 1),
            "samples": len(rss),
            "rss_first_mb": round(float(rss[0]), 1),
            "rss_last_mb": round(float(rss[-1]), 1),
            "rss_max_mb": round(float(rss.max()), 1),
            "rss_slope_mb_per_min": round(slope, 3),
            "rss_growth_mb": round(float(rss[-1] - rss[0]), 1),
            # Start-up fills (the two-minute tilt history, caches) show early; a leak
            # goes on: the second half tells them apart.
            "rss_growth_second_half_mb": round(
                float(rss[-1] - np.interp(times[-1] / 2, times, rss)), 1
            ),
            "rss_mb_each_minute": [
                round(float(np.interp(minute, times, rss)), 1)
                for minute in np.arange(0.0, times[-1] + 1e-9, 60.0)
            ],
            "store_wal_max_mb": (
                None if self.store_wal_max_mb is None else round(self.store_wal_max_mb, 1)
            ),
        }


@dataclass
class ScaleResult:
    """The hub's figures at one sensor count."""

    sensors: int
    cpu_pct: float
    rss_mb: float
    window_s: float
    samples_per_s: float
    """What the hub's links reported receiving (sum of their sample rates)."""
    emulator_cpu_pct: float
    streaming: int
    """Sensors streaming when the window closed."""
    soak: SoakResult | None = None

    @property
    def cpu_pct_at_full_rate(self) -> float | None:
        """CPU scaled to every sensor delivering 200 Hz, when fewer samples arrived."""
        if self.samples_per_s <= 0:
            return None
        return self.cpu_pct * self.sensors * RATE_HZ / self.samples_per_s

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-able object."""
        full = self.cpu_pct_at_full_rate
        out: dict[str, Any] = {
            "cpu_pct": round(self.cpu_pct, 2),
            "cpu_pct_at_full_rate": None if full is None else round(full, 2),
            "rss_mb": round(self.rss_mb, 1),
            "window_s": round(self.window_s, 1),
            "samples_per_s": round(self.samples_per_s),
            "expected_samples_per_s": self.sensors * RATE_HZ,
            "streaming": self.streaming,
            "emulator_cpu_pct": round(self.emulator_cpu_pct, 1),
            # A sensor process at a full core delivers late and in bursts: the hub's
            # figures at that count are a floor, not a measurement of steady 200 Hz.
            "emulator_saturated": self.emulator_cpu_pct >= SATURATED_PCT,
        }
        if self.soak is not None:
            out["soak"] = self.soak.to_json()
        return out


@dataclass
class _Statuses:
    """The latest sensor status each sensor's retained topic carried."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def streaming(self) -> int:
        return sum(1 for s in self.latest.values() if s.get("online"))

    def samples_per_s(self) -> float:
        # A link that went down keeps reporting the rate it last achieved: count the live.
        return float(
            sum(s.get("sample_rate_hz") or 0.0 for s in self.latest.values() if s.get("online"))
        )


@contextlib.asynccontextmanager
async def _watch_statuses(port: int, hub: str) -> AsyncIterator[_Statuses]:
    statuses = _Statuses()
    ready = asyncio.Event()

    async def listen() -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", port, identifier=None) as client:
                    await client.subscribe(f"sensorhub/{hub}/sensors/+/status", qos=1)
                    ready.set()
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray) and payload:
                            record = json.loads(payload)
                            statuses.latest[record["address"]] = record
                            statuses.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    task = asyncio.create_task(listen(), name="bench sensor statuses")
    try:
        async with asyncio.timeout(10):
            await ready.wait()
    except TimeoutError:
        task.cancel()
        raise MqttError("the bench could not subscribe to the hub's sensor statuses") from None
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _emulator(
    athletes: int, workdir: Path, say: Say
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, list[dict[str, Any]]]]:
    truth = workdir / "truth.jsonl"
    log = (workdir / "emulator.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sensorhub",
        "emulate",
        "--hci",
        "tcp-server:127.0.0.1:0",
        "--athletes",
        str(athletes),
        "--scenario",
        "hip_thrust",
        "--truth",
        str(truth),
        stderr=log,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = await _wait_for_port(process, workdir / "emulator.log")
        described = json.loads(truth.read_text().splitlines()[-1])
        say(f"emulator: {len(described['sensors'])} virtual sensors on port {port}")
        yield process, port, described["sensors"]
    finally:
        await _stop(process, timeout=10)
        log.close()


async def _wait_for_port(process: asyncio.subprocess.Process, log: Path) -> int:
    deadline = time.monotonic() + EMULATOR_START_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise SensorhubError(f"the emulator exited at start:\n{_tail(log)}")
        text = _tail(log, 100_000)
        # The truth file is written before the sensors are listed: wait for both.
        if (match := re.search(r"tcp-client:127\.0\.0\.1:(\d+)", text)) and "ground truth" in text:
            return int(match.group(1))
        await asyncio.sleep(0.1)
    raise SensorhubError(f"the emulator did not listen within {EMULATOR_START_S:g} s")


async def _stop(process: asyncio.subprocess.Process, *, timeout: float) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


async def _pair(port: int, state: Path, sensors: list[dict[str, Any]], say: Say) -> None:
    """Bond with and register each sensor, without the calibration holds."""
    if not sensors:
        return
    started = time.monotonic()
    registry = SensorRegistry(state / "sensors.json")
    async with Radio(f"tcp-client:127.0.0.1:{port}", state_dir=state) as radio:
        for sensor in sensors:
            await pair_sensor(
                radio,
                registry,
                sensor["address"],
                role=sensor["body"],
                athlete=f"A{sensor['athlete'] + 1:02d}",
                calibrate=False,
            )
    took = time.monotonic() - started
    say(f"paired {len(sensors)} sensors in {took:.1f} s ({took / len(sensors):.2f} s each)")


async def _run_hub(
    *,
    port: int,
    state: Path,
    broker_url: str,
    broker_port: int,
    emulator_pid: int,
    sensors: int,
    warmup_s: float,
    window_s: float,
    soak_s: float,
    log: Path,
    say: Say,
) -> ScaleResult:
    hub_name = f"{HUB_PREFIX}-{sensors}"
    async with _watch_statuses(broker_port, hub_name) as statuses:
        with log.open("ab") as out:
            hub = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sensorhub",
                "run",
                "--no-ui",
                "--hub-name",
                hub_name,
                "--ble",
                f"tcp-client:127.0.0.1:{port}",
                "--broker",
                broker_url,
                "--state-dir",
                str(state),
                stdout=out,
                stderr=out,
            )
        try:
            connect_timeout = 30.0 + CONNECT_S_PER_SENSOR * sensors
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(connect_timeout):
                    while statuses.streaming() < sensors:
                        if hub.returncode is not None:
                            raise SensorhubError(
                                f"the hub exited (status {hub.returncode}):\n" + _tail(log)
                            )
                        statuses.changed.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(1.0):
                                await statuses.changed.wait()
            if statuses.streaming() == 0:
                raise SensorhubError(f"no sensor streamed within {connect_timeout:g} s; see {log}")
            if statuses.streaming() < sensors:
                say(
                    f"only {statuses.streaming()} of {sensors} sensors streamed within "
                    f"{connect_timeout:g} s: measuring those"
                )
            await asyncio.sleep(warmup_s)
            first, emulator_first = proc_sample(hub.pid), proc_sample(emulator_pid)
            await asyncio.sleep(window_s)
            last, emulator_last = proc_sample(hub.pid), proc_sample(emulator_pid)
            result = ScaleResult(
                sensors=sensors,
                cpu_pct=cpu_pct(first, last),
                rss_mb=last.rss_mb,
                window_s=last.at - first.at,
                samples_per_s=statuses.samples_per_s(),
                emulator_cpu_pct=cpu_pct(emulator_first, emulator_last),
                streaming=statuses.streaming(),
            )
            say(
                f"{sensors} sensors: hub {result.cpu_pct:.1f} % of a core, "
                f"{result.rss_mb:.0f} MB; {result.samples_per_s:.0f} samples/s received; "
                f"emulator {result.emulator_cpu_pct:.0f} % of a core"
            )
            if result.emulator_cpu_pct >= SATURATED_PCT:
                say(
                    f"the emulator was saturated at {sensors} sensors: they ran late, so the "
                    "hub's figures at this count are a floor, not a measurement at 200 Hz"
                )
            if soak_s > 0:
                result.soak = await _soak(hub.pid, soak_s, say, wal=state / f"{FILE_NAME}-wal")
            return result
        finally:
            await _stop(hub, timeout=HUB_STOP_S)


def _size_mb(path: Path) -> float:
    """A file's size in MB; 0 while it does not exist."""
    try:
        return path.stat().st_size / 1e6
    except FileNotFoundError:
        return 0.0


async def _soak(pid: int, duration_s: float, say: Say, *, wal: Path) -> SoakResult:
    every = min(5.0, max(1.0, duration_s / 30))
    say(f"soak: RSS every {every:g} s for {duration_s:g} s")
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    told = 0  # minutes reported so far
    wal_mb = 0.0
    while True:
        sample = proc_sample(pid)
        samples.append((sample.at - started, sample.rss_mb))
        wal_mb = max(wal_mb, _size_mb(wal))
        if (minute := int((sample.at - started) // 60)) > told:
            told = minute
            say(
                f"soak: {minute} min of {duration_s / 60:g}, RSS {sample.rss_mb:.1f} MB "
                f"({sample.rss_mb - samples[0][1]:+.1f} MB); store WAL at most {wal_mb:.1f} MB"
            )
        if sample.at - started >= duration_s:
            break
        await asyncio.sleep(min(every, max(0.0, started + duration_s - time.monotonic())))
    return SoakResult(time.monotonic() - started, samples, wal_mb)


async def measure_scale(
    counts: list[int],
    *,
    workdir: Path,
    broker_url: str,
    broker_port: int,
    warmup_s: float,
    window_s: float,
    soak_s: float,
    say: Say,
) -> dict[int, ScaleResult]:
    """Run the hub with each number of sensors in turn; soak at the largest.

    Each count gets an emulator of its own with just enough athletes: idle virtual
    sensors still run their motion models, and an emulator busier than it needs to be
    would slow every connection and starve the sensors that stream.
    """
    if not _has_proc():
        raise ConfigError("the scale benchmark reads /proc to measure the hub: Linux only")
    if not counts or min(counts) < 1:
        raise ConfigError(f"--sensors {counts}: give sensor counts of at least 1, e.g. 1,10,40")
    counts = sorted(set(counts))
    results: dict[int, ScaleResult] = {}
    for count in counts:
        here = workdir / f"scale-{count}"
        here.mkdir()
        state = here / "state"
        async with _emulator((count + 1) // 2, here, say) as (emulator, port, sensors):
            ordered = sorted(sensors, key=lambda s: (s["athlete"], s["body"] != "bar"))
            await _pair(port, state, ordered[:count], say)
            results[count] = await _run_hub(
                port=port,
                state=state,
                broker_url=broker_url,
                broker_port=broker_port,
                emulator_pid=emulator.pid,
                sensors=count,
                warmup_s=warmup_s,
                window_s=window_s,
                soak_s=soak_s if count == counts[-1] else 0.0,
                log=here / "hub.log",
                say=say,
            )
    return results
