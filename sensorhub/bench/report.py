"""The benchmark's one result object, its targets, and a table of it for people.

Keys of the object ``sensorhub bench --json`` prints:

- ``pipeline_samples_per_s``, ``imufusion_samples_per_s``,
  ``pipeline_to_imufusion_ratio``: per core, medians (``pipeline`` has the details,
  ``pipeline.breakdown`` the CPU time per frame of each part of the hot path, µs, and
  ``pipeline.breakdown_calls_per_frame`` how often each part runs:
  :mod:`~sensorhub.bench.breakdown`);
- ``rep_latency_p50_ms``, ``rep_latency_p99_ms``, ``tilt_latency_p50_ms``,
  ``tilt_latency_p99_ms`` (``latency`` has counts, maxima and velocity updates);
- per sensor count, at the top level keyed by the count as a string (``"1"``, ``"10"``,
  ``"40"``): ``{"cpu_pct": …, "rss_mb": …}`` of the hub process; ``scale`` holds the
  same counts with the sample rates received, the emulator's CPU and the soak;
- ``targets``: per figure the target, the value and ``pass`` (None: not measured);
- ``machine``, ``broker``, ``duration_s``.

Figures that were not measured (a part left out) are ``null``.
"""

from __future__ import annotations

from typing import Any, Final

from rich.console import Console
from rich.table import Table

from sensorhub.bench.latency import LatencyResult
from sensorhub.bench.pipeline import PipelineResult
from sensorhub.bench.scale import ScaleResult

__all__ = ["RADIO_MAX_SAMPLES_PER_S", "render", "summarise"]

RATIO_TARGET: Final = 0.5
RADIO_MAX_SAMPLES_PER_S: Final = 15_000
"""IMU samples per second one BLE radio can deliver at most, even on the 2M PHY."""
REP_P99_TARGET_MS: Final = 50.0
CPU_TARGET_SENSORS: Final = 40
CPU_TARGET_PCT: Final = 25.0
RSS_GROWTH_LIMIT_MB: Final = 5.0
"""RSS counts as flat when it grows by no more than this over the soak."""


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _at_most(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def summarise(
    *,
    pipeline: PipelineResult | None,
    latency: LatencyResult | None,
    scale: dict[int, ScaleResult],
    broker: str | None,
    machine: dict[str, Any],
    duration_s: float,
) -> dict[str, Any]:
    """Gather the measurements into the result object (module docstring)."""
    rep = latency.summary("rep") if latency is not None else {}
    tilt = latency.summary("tilt") if latency is not None else {}
    out: dict[str, Any] = {
        "pipeline_samples_per_s": None,
        "imufusion_samples_per_s": None,
        "pipeline_to_imufusion_ratio": None,
        "rep_latency_p50_ms": rep.get("p50_ms"),
        "rep_latency_p99_ms": rep.get("p99_ms"),
        "tilt_latency_p50_ms": tilt.get("p50_ms"),
        "tilt_latency_p99_ms": tilt.get("p99_ms"),
    }
    if pipeline is not None:
        details = pipeline.to_json()
        for key in (
            "pipeline_samples_per_s",
            "imufusion_samples_per_s",
            "pipeline_to_imufusion_ratio",
        ):
            out[key] = details[key]
        out["pipeline"] = details
    if latency is not None:
        out["latency"] = latency.to_json()
    for count, result in sorted(scale.items()):
        out[str(count)] = {"cpu_pct": round(result.cpu_pct, 2), "rss_mb": round(result.rss_mb, 1)}
    out["scale"] = {str(count): result.to_json() for count, result in sorted(scale.items())}
    soaked = next((r.soak for r in scale.values() if r.soak is not None), None)
    soak = soaked.to_json() if soaked is not None else None
    biggest = scale.get(CPU_TARGET_SENSORS)
    # Sensors the emulator could not feed at full rate would flatter the hub: judge the
    # CPU scaled to full rate when that is higher.
    biggest_cpu = (
        None if biggest is None else max(biggest.cpu_pct, biggest.cpu_pct_at_full_rate or 0.0)
    )
    out["targets"] = {
        "pipeline_to_imufusion_ratio": {
            "target": f">= {RATIO_TARGET}",
            "value": out["pipeline_to_imufusion_ratio"],
            "pass": _at_least(out["pipeline_to_imufusion_ratio"], RATIO_TARGET),
        },
        "pipeline_vs_one_radio": {
            "target": f">= {RADIO_MAX_SAMPLES_PER_S} samples/s (one BLE radio's most)",
            "value": out["pipeline_samples_per_s"],
            "pass": _at_least(out["pipeline_samples_per_s"], RADIO_MAX_SAMPLES_PER_S),
        },
        "rep_latency_p99_ms": {
            "target": f"<= {REP_P99_TARGET_MS:g}",
            "value": out["rep_latency_p99_ms"],
            "pass": _at_most(out["rep_latency_p99_ms"], REP_P99_TARGET_MS),
        },
        f"cpu_pct_{CPU_TARGET_SENSORS}_sensors": {
            "target": f"< {CPU_TARGET_PCT:g} % of one core",
            "value": None if biggest_cpu is None else round(biggest_cpu, 2),
            "pass": None if biggest_cpu is None else biggest_cpu < CPU_TARGET_PCT,
        },
        "rss_flat_over_soak": {
            "target": f"growth <= {RSS_GROWTH_LIMIT_MB:g} MB",
            "value": None if soak is None else soak["rss_growth_mb"],
            "pass": None if soak is None else soak["rss_growth_mb"] <= RSS_GROWTH_LIMIT_MB,
        },
    }
    out["broker"] = broker
    out["machine"] = machine
    out["duration_s"] = round(duration_s, 1)
    return out


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "—"
    return format(value, spec) if spec else str(value)


def _verdict(passed: bool | None) -> str:
    return {True: "[green]pass[/]", False: "[red]miss[/]", None: "—"}[passed]


def render(result: dict[str, Any], console: Console) -> None:
    """Print the result as tables for people."""
    targets = result["targets"]
    figures = Table(title="sensorhub bench", title_justify="left")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    figures.add_column("target")
    figures.add_column("")
    pipeline = result.get("pipeline") or {}
    ratio = targets["pipeline_to_imufusion_ratio"]
    figures.add_row("pipeline, samples/s per core", _fmt(result["pipeline_samples_per_s"], ","))
    figures.add_row("imufusion alone, samples/s", _fmt(result["imufusion_samples_per_s"], ","))
    figures.add_row(
        "pipeline / imufusion",
        _fmt(ratio["value"], ".3f"),
        ratio["target"],
        _verdict(ratio["pass"]),
    )
    radio = targets["pipeline_vs_one_radio"]
    figures.add_row(
        "pipeline / one radio's most",
        _fmt(
            None
            if result["pipeline_samples_per_s"] is None
            else result["pipeline_samples_per_s"] / RADIO_MAX_SAMPLES_PER_S,
            ".2f",
        ),
        radio["target"],
        _verdict(radio["pass"]),
    )
    if pipeline:
        figures.add_row(
            f"pipeline, {pipeline['coalesced_frames_per_call']} frames per call",
            _fmt(pipeline["coalesced_samples_per_s"], ","),
        )
        figures.add_row(
            "cost per call / per sample",
            f"{pipeline['per_call_us']:.0f} µs / {pipeline['per_sample_us']:.1f} µs",
        )
    rep = targets["rep_latency_p99_ms"]
    figures.add_row("rep latency p50, ms", _fmt(result["rep_latency_p50_ms"]))
    figures.add_row(
        "rep latency p99, ms",
        _fmt(result["rep_latency_p99_ms"]),
        rep["target"],
        _verdict(rep["pass"]),
    )
    figures.add_row(
        "tilt latency p50 / p99, ms",
        (f"{_fmt(result['tilt_latency_p50_ms'])} / {_fmt(result['tilt_latency_p99_ms'])}"),
    )
    console.print(figures)
    if pipeline.get("breakdown"):
        console.print(_breakdown_table(pipeline))

    if result["scale"]:
        hub = Table(title="the hub process (sensors at 200 Hz)", title_justify="left")
        for column in (
            "sensors",
            "CPU % of a core",
            "at full rate",
            "RSS MB",
            "samples/s in",
            "emulator CPU %",
        ):
            hub.add_column(column, justify="right")
        for count, row in result["scale"].items():
            hub.add_row(
                count,
                f"{row['cpu_pct']:.1f}",
                _fmt(row["cpu_pct_at_full_rate"], ".1f"),
                f"{row['rss_mb']:.0f}",
                f"{row['samples_per_s']:,} / {row['expected_samples_per_s']:,}",
                f"{row['emulator_cpu_pct']:.0f}",
            )
        console.print(hub)
        for count, row in result["scale"].items():
            if row["emulator_saturated"] or row["streaming"] < int(count):
                console.print(
                    f"[yellow]{count} sensors: the emulator process ran at "
                    f"{row['emulator_cpu_pct']:.0f} % of a core and {row['streaming']} sensors "
                    "streamed: it could not keep every sensor at 200 Hz, so the hub's figures "
                    "there are a floor[/]"
                )
        for name in (f"cpu_pct_{CPU_TARGET_SENSORS}_sensors", "rss_flat_over_soak"):
            target = targets[name]
            console.print(
                f"{name}: {_fmt(target['value'])} (target {target['target']}) "
                f"{_verdict(target['pass'])}"
            )
    machine = result["machine"]
    console.print(
        f"[dim]{machine['cores']} cores, Python {machine['python']}, {machine['platform']}, "
        f"load {machine['load_average_1m']} at the start; broker: {result['broker']}; "
        f"took {result['duration_s']:.0f} s[/]"
    )


def _breakdown_table(pipeline: dict[str, Any]) -> Table:
    """Where a frame's CPU time goes, part by part, with each group's subtotal."""
    parts: dict[str, float] = pipeline["breakdown"]
    calls: dict[str, float] = pipeline["breakdown_calls_per_frame"]
    whole = pipeline["per_frame_us"]
    table = Table(
        title=f"where a frame's CPU time goes ({whole:.0f} µs per frame)", title_justify="left"
    )
    for column in ("part", "µs per frame", "share", "calls per frame"):
        table.add_column(column, justify="left" if column == "part" else "right")
    groups: dict[str, float] = {}
    for part, us in parts.items():
        group, _, _ = part.partition(".")
        groups[group] = groups.get(group, 0.0) + us
    shown: set[str] = set()
    for part, us in parts.items():
        group, _, step = part.partition(".")
        if step and group not in shown:
            shown.add(group)
            table.add_row(f"[bold]{group}[/]", f"{groups[group]:.1f}", _share(groups[group], whole))
        table.add_row(
            f"  {step}" if step else part, f"{us:.1f}", _share(us, whole), f"{calls[part]:.2f}"
        )
    total = sum(parts.values())
    table.add_row("[dim]the parts added up[/]", f"{total:.1f}", _share(total, whole))
    return table


def _share(us: float, whole: float) -> str:
    return f"{100.0 * us / whole:.1f} %" if whole > 0 else "—"
