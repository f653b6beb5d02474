"""What the lifter and coach see in the terminal: sensors, reps as they happen, tilt.

:class:`LiveView` is a rich full-screen panel refreshed a few times a second;
:class:`PlainView` prints one line per rep, set, alert and sensor change instead (for
``--no-ui``, logs and pipes). Both only read records: they compute nothing.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sensorhub.analysis.tilt import ANTERIOR_TILT_LIMIT_DEG
from sensorhub.records import Record

__all__ = ["LiveView", "PlainView", "tilt_gauge"]

GAUGE_RANGE_DEG: Final = 30.0
"""The gauge spans this far either side of neutral: a hip thrust's bottom and a rest on
the bench (about 25° anterior) stay on it, not pinned to its end."""
GAUGE_WIDTH: Final = 31
VERDICT_STYLES: Final = {"ok": "bold green", "anterior_tilt": "bold red", "large_range": "bold red"}


def tilt_gauge(
    tilt_deg: float | None,
    *,
    lockout_deg: float | None = None,
    verdict: str | None = None,
    width: int = GAUGE_WIDTH,
) -> Text:
    """A one-line gauge: anterior tilt on the left, posterior on the right, neutral mid.

    The live tilt moves through the whole rep, and anterior of neutral at every bottom
    and rest, so its dot is never a warning; what is judged is the lockout. The gauge
    marks the lockout limit (:data:`ANTERIOR_TILT_LIMIT_DEG` anterior, ``╎``) and, once
    a rep is in, says the last rep's lockout tilt and verdict, coloured by the verdict.
    """
    cells = ["─"] * width
    mid = width // 2
    cells[mid] = "┼"
    cells[_cell(-ANTERIOR_TILT_LIMIT_DEG, mid)] = "╎"
    text = Text("ant ")
    if tilt_deg is None:
        text.append("".join(cells), style="dim")
        text.append(" post   --.-°")
    else:
        pos = _cell(tilt_deg, mid)
        text.append("".join(cells[:pos]))
        text.append("●", style="bold cyan")
        text.append("".join(cells[pos + 1 :]))
        text.append(f" post {tilt_deg:+6.1f}°")
    if lockout_deg is not None:
        text.append(" · last lockout ")
        text.append(
            f"{lockout_deg:+.1f}° {verdict or ''}".rstrip(),
            style=VERDICT_STYLES.get(verdict or "", ""),
        )
        text.append(f" (limit {-ANTERIOR_TILT_LIMIT_DEG:+g}°)", style="dim")
    return text


def _cell(tilt_deg: float, mid: int) -> int:
    """The gauge's cell for a tilt, clipped to its ends."""
    clipped = max(-GAUGE_RANGE_DEG, min(GAUGE_RANGE_DEG, tilt_deg))
    return round(mid + clipped / GAUGE_RANGE_DEG * mid)


def _fmt(value: Any, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


@dataclass
class _AthleteState:
    exercise: str = ""
    set_index: int = 1
    reps: list[Record] = field(default_factory=list)
    last_set: Record | None = None
    tilt_deg: float | None = None
    velocity_mps: float | None = None
    best_mcv: float | None = None


class LiveView:
    """A rich live panel; an async context manager that refreshes while it is open."""

    def __init__(self, console: Console | None = None, *, title: str = "sensorhub") -> None:
        self.console = console or Console()
        self.title = title
        self.header = ""
        self.footer = ""
        self.sensors: dict[str, Record] = {}
        self.athletes: dict[str, _AthleteState] = {}
        self.alerts: deque[str] = deque(maxlen=4)
        self.sets_done: deque[str] = deque(maxlen=6)
        self._started = time.monotonic()
        self._live: Live | None = None

    async def __aenter__(self) -> LiveView:
        self._live = Live(self, console=self.console, refresh_per_second=4, screen=False)
        self._live.__enter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    # RecordSink -------------------------------------------------------------------------

    def on_record(self, record: Record) -> None:
        """Take one analysis record."""
        kind = record["type"]
        if kind == "session":
            self.footer = f"session {record['session_id']} {record['event']}"
            return
        state = self.athletes.setdefault(record["athlete"], _AthleteState())
        if kind == "tilt":
            state.tilt_deg = record["tilt_deg"]
        elif kind == "velocity":
            state.velocity_mps = record["velocity_mps"]
        elif kind == "rep":
            state.exercise = record["exercise"]
            if record["set_index"] != state.set_index:
                state.set_index, state.reps, state.best_mcv = record["set_index"], [], None
            state.reps.append(record)
            mcv = record["mcv_mps"]
            if mcv is not None and not record["partial"]:
                state.best_mcv = max(mcv, state.best_mcv or 0.0)
        elif kind == "set":
            state.last_set = record
            self.sets_done.append(
                f"{record['athlete']} set {record['set_index']}: {record['rep_count']} reps, "
                f"best {_fmt(record['best_mcv_mps'], '.2f')} m/s, "
                f"loss {_fmt(record['velocity_loss_pct'], '.0f')} %"
            )
            state.set_index = record["set_index"] + 1
            state.reps, state.best_mcv = [], None
        elif kind == "alert":
            self.alerts.append(f"{record['athlete']}: {record['message']}")

    def on_sensor(self, record: Record) -> None:
        """Take one sensor status record."""
        self.sensors[record["address"]] = record

    # Rendering --------------------------------------------------------------------------

    def __rich__(self) -> Panel:
        elapsed = time.monotonic() - self._started
        parts: list[Any] = []
        if self.header:
            parts.append(Text(self.header, style="dim"))
        parts.append(self._sensor_table())
        for name, state in sorted(self.athletes.items()):
            parts.append(self._athlete_panel(name, state))
        if self.sets_done:
            parts.append(Text("\n".join(self.sets_done), style="cyan"))
        if self.alerts:
            parts.append(Text("\n".join(f"⚠ {a}" for a in self.alerts), style="bold red"))
        if self.footer:
            parts.append(Text(self.footer, style="dim"))
        return Panel(Group(*parts), title=f"{self.title} · {elapsed:4.0f} s", border_style="blue")

    def _sensor_table(self) -> Table:
        table = Table(expand=True, box=None, header_style="bold")
        for column in ("sensor", "athlete", "state", "battery", "rate", "lost", "reconnects"):
            table.add_column(column)
        if not self.sensors:
            table.add_row("(waiting for sensors)", "", "", "", "", "", "")
        for record in self.sensors.values():
            state = record["state"]
            style = "green" if record["online"] else "yellow"
            table.add_row(
                f"{record['role']} {record['address']}",
                record["athlete"],
                Text(state, style=style),
                _fmt(record["battery_pct"], "d") + " %",
                _fmt(record["sample_rate_hz"], ".0f") + " Hz",
                str(record["samples_lost"]),
                str(record["reconnects"]),
            )
        return table

    def _athlete_panel(self, name: str, state: _AthleteState) -> Panel:
        reps = Table(box=None, header_style="bold", expand=False)
        for column in ("rep", "MCV m/s", "peak", "ROM cm", "tilt lockout", "verdict"):
            reps.add_column(column, justify="right")
        for rep in state.reps[-8:]:
            verdict = rep["tilt_verdict"] or ("partial" if rep["partial"] else "")
            style = "red" if verdict in {"anterior_tilt", "large_range", "partial"} else ""
            rom = rep["rom_m"]
            reps.add_row(
                str(rep["rep_in_set"]),
                _fmt(rep["mcv_mps"], ".2f"),
                _fmt(rep["peak_velocity_mps"], ".2f"),
                _fmt(None if rom is None else rom * 100, ".1f"),
                _fmt(rep["tilt_lockout_deg"], "+.1f") + "°",
                Text(verdict or "ok", style=style),
            )
        loss = None
        full = [r["mcv_mps"] for r in state.reps if not r["partial"] and r["mcv_mps"] is not None]
        if state.best_mcv and full:
            loss = 100.0 * (1.0 - full[-1] / state.best_mcv)
        summary = Text(
            f"set {state.set_index} · {len(full)} reps · velocity loss {_fmt(loss, '.0f')} % · "
            f"bar {_fmt(state.velocity_mps, '+.2f')} m/s"
        )
        judged = next((r for r in reversed(state.reps) if r["tilt_lockout_deg"] is not None), None)
        gauge = tilt_gauge(
            state.tilt_deg,
            lockout_deg=None if judged is None else judged["tilt_lockout_deg"],
            verdict=None if judged is None else judged["tilt_verdict"],
        )
        body = Group(summary, gauge, reps)
        return Panel(body, title=f"{name} · {state.exercise or 'waiting for the first rep'}")


class PlainView:
    """One line per rep, set, alert and sensor change; for ``--no-ui`` and pipes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._states: dict[str, str] = {}

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def on_record(self, record: Record) -> None:
        """Print reps, sets, alerts and session changes; live streams are skipped."""
        kind = record["type"]
        if kind == "rep":
            tilt = record["tilt_lockout_deg"]
            self._line(
                f"rep  {record['athlete']} set {record['set_index']} rep {record['rep_in_set']}: "
                f"MCV {_fmt(record['mcv_mps'], '.2f')} m/s, peak "
                f"{_fmt(record['peak_velocity_mps'], '.2f')} m/s, ROM "
                f"{_fmt(record['rom_m'], '.3f')} m"
                + ("" if tilt is None else f", tilt at lockout {tilt:+.1f}°")
                + (" (partial)" if record["partial"] else "")
            )
        elif kind == "set":
            self._line(
                f"set  {record['athlete']} set {record['set_index']}: {record['rep_count']} reps, "
                f"best {_fmt(record['best_mcv_mps'], '.2f')} m/s, velocity loss "
                f"{_fmt(record['velocity_loss_pct'], '.0f')} %"
            )
        elif kind == "alert":
            self._line(f"alert {record['athlete']}: {record['message']}")
        elif kind == "session":
            self._line(f"session {record['session_id']} {record['event']}")

    def on_sensor(self, record: Record) -> None:
        """Print a sensor's state when it changes."""
        if self._states.get(record["address"]) != record["state"]:
            self._states[record["address"]] = record["state"]
            self._line(
                f"sensor {record['role']} {record['address']} ({record['athlete']}): "
                f"{record['state']}"
            )
