#!/usr/bin/env python3
"""Convert the squats and deadlifts of wireless-imu-activity-tracking into a labelled folder.

The public repository suzanmanasreh/wireless-imu-activity-tracking holds the logs of one
IMU clipped to the middle of a barbell (an Adafruit Feather streaming over BLE UART):
squats, deadlifts, Romanian deadlifts, rows, presses and curls, sets of ten mostly.
This tool writes its squat, deadlift and Romanian-deadlift sets as the folder that
``sensorhub evaluate --recordings`` reads: a CSV per set (``t`` in seconds, ``ax ay az``
m/s², ``gx gy gz`` rad/s, ``mx my mz`` as logged) and ``labels.csv``::

    .venv/bin/python tools/wireless_imu_activity_tracking.py SRC OUT
    .venv/bin/sensorhub evaluate --recordings OUT --json

SRC is a checkout of that repository; OUT is a new folder. Nothing of SRC is changed.

What the repository holds, and how it is read
    ``data2/{squat,dead,rdl}/*.csv``: a row per sample, no header:
    ``node, t (ms, the board's clock), ax, ay, az (m/s²), gx, gy, gz (rad/s), mx, my, mz``,
    at irregular times (BLE delivers bursts). The rep count is in the name
    (``squat_mike_set1_reps10_1.csv``: 10 reps; the last ``_1`` is the node). Rows are
    copied as they are, the time divided by 1000.

    ``data/{squat,rdl}/*.log``: the logging script's console output, one axis per line
    (``node,AX,t_ms,value``) among its other messages, with no rep count in the name.
    Each axis is interpolated linearly at every time any axis was read, over the span
    in which all six were (as the repository's own cleaning script does); no rep count
    is given.

Set aside
    A set is listed but not scored only for a reason anyone can check in the data, and
    the reason, with the figure measured, is written beside it in ``labels.csv``:

    - the log holds no samples;
    - it is sampled too slowly to hold a lift: fewer than
      :data:`~sensorhub.analysis.recording.MIN_RATE_HZ` samples a second over its
      stretches without gaps (the ``data/`` console logs: under 2 a second);
    - a gap without samples longer than the rest that ends a set
      (:data:`~sensorhub.analysis.sets.DEFAULT_SET_GAP_S`): the file is not one set;
    - it is too short for the reps its name gives: under :data:`MIN_SECONDS_PER_REP` a
      rep, start and end included;
    - its name gives no rep count.

    Never because the analysis gets a set wrong: that is what the figures are for.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sensorhub.analysis.labelled import LABELS_FILE
from sensorhub.analysis.recording import MIN_RATE_HZ
from sensorhub.analysis.sets import DEFAULT_SET_GAP_S

REPOSITORY: Final = "suzanmanasreh/wireless-imu-activity-tracking"
FOLDERS: Final = {
    "squat": "squat",
    "dead": "deadlift",
    "deadlift": "deadlift",
    "rdl": "romanian_deadlift",
}
"""Exercise folder of the repository -> sensorhub's exercise name."""
MIN_SECONDS_PER_REP: Final = 1.5
"""No loaded set here is quicker than this a rep, start and end included: the fastest,
data2/squat/squat_andrew_set2, holds its ten reps in 16.5 s (1.65 s a rep)."""
MAX_STEP_S: Final = 1.0
"""Spacings up to this count towards the rate; longer ones are gaps (as the analysis
cuts a recording at gaps over a second)."""
OUT_COLUMNS: Final = ("t", "ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")
LABEL_COLUMNS: Final = ("file", "role", "exercise", "reps", "set_aside", "note")
_REPS: Final = re.compile(r"_reps?(\d+)(?:_|$)")
_LOG_LINE: Final = re.compile(r"^\d+,([AGM][XYZ]),(\d+),(-?\d+(?:\.\d*)?)$")
_AXES: Final = ("AX", "AY", "AZ", "GX", "GY", "GZ", "MX", "MY", "MZ")


class ConversionError(Exception):
    """SRC or OUT cannot be used; the message says which and why."""


@dataclass
class Converted:
    """One set, converted: its rows (strings as they go to the CSV) and what was measured."""

    source: str
    out_name: str
    exercise: str
    reps: int | None
    times_ms: list[float]
    rows: list[list[str]]
    skipped_lines: int = 0
    reasons: list[str] = field(default_factory=list)

    rate_hz: float = 0.0
    duration_s: float = 0.0

    def measure(self) -> None:
        """Measure rate and duration, and find the reasons, if any, to set the set aside."""
        times = sorted(set(self.times_ms))
        if len(times) < 2 or not self.rows:
            self.reasons.append(f"the log holds no samples ({len(self.rows)} rows)")
            return
        steps = [(b - a) / 1000.0 for a, b in itertools.pairwise(times)]
        inside = [s for s in steps if s <= MAX_STEP_S]
        self.rate_hz = len(inside) / sum(inside) if inside and sum(inside) > 0 else 0.0
        self.duration_s = (times[-1] - times[0]) / 1000.0
        if self.rate_hz < MIN_RATE_HZ:
            self.reasons.append(
                f"sampled at {self.rate_hz:.1f} Hz (median spacing "
                f"{statistics.median(steps):.2f} s), too slowly to hold a lift: the analysis "
                f"needs {MIN_RATE_HZ:g} Hz or more"
            )
        longest = max(steps)
        if longest > DEFAULT_SET_GAP_S:
            at = (times[steps.index(longest)] - times[0]) / 1000.0
            self.reasons.append(
                f"a {longest:.1f} s gap without samples at {at:.1f} s, longer than the "
                f"{DEFAULT_SET_GAP_S:g} s rest that ends a set: the file is not one set"
            )
        if self.reps is None:
            self.reasons.append("its name gives no rep count")
        elif self.reps and self.duration_s / self.reps < MIN_SECONDS_PER_REP:
            self.reasons.append(
                f"{self.duration_s:.1f} s long, too short for the {self.reps} reps its name "
                f"gives: {self.duration_s / self.reps:.2f} s a rep with start and end "
                f"included, quicker than any loaded set here (at least "
                f"{MIN_SECONDS_PER_REP:g} s a rep)"
            )

    def note(self) -> str:
        """Where it came from and what it holds, for the labels file."""
        what = f"from {self.source}"
        if self.rows:
            what += (
                f"; {len(self.rows)} samples over {self.duration_s:.1f} s, "
                f"{self.rate_hz:.1f} Hz between gaps"
            )
        if self.skipped_lines:
            what += f"; {self.skipped_lines} line(s) that are no sample left out"
        return what


def check_source(src: Path) -> list[Path]:
    """The exercise folders of SRC that hold squats and deadlifts, or a ConversionError."""
    if not src.is_dir():
        raise ConversionError(f"{src} is not a folder: give a checkout of {REPOSITORY}")
    found = [
        src / top / name
        for top in ("data", "data2")
        for name in FOLDERS
        if (src / top / name).is_dir()
    ]
    if not (src / "data2").is_dir() or not any(p.parent.name == "data2" for p in found):
        raise ConversionError(
            f"{src} does not look like a checkout of {REPOSITORY}: it has no "
            f"data2/{{{','.join(FOLDERS)}}} folder (git clone https://github.com/{REPOSITORY})"
        )
    return found


def read_data2(path: Path, src: Path) -> Converted:
    """A data2 CSV: node, t_ms, ax, ay, az, gx, gy, gz, mx, my, mz per row, no header."""
    times: list[float] = []
    rows: list[list[str]] = []
    skipped = 0
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        for cells in csv.reader(handle):
            values = [c.strip() for c in cells]
            if len(values) != 11 or not all(_is_number(v) for v in values):
                skipped += int(any(values))
                continue
            t_ms = float(values[1])
            times.append(t_ms)
            rows.append([_seconds(values[1]), *values[2:]])
    return Converted(
        source=path.relative_to(src).as_posix(),
        out_name=f"data2_{path.stem}.csv",
        exercise=FOLDERS[path.parent.name],
        reps=_reps(path.stem),
        times_ms=times,
        rows=rows,
        skipped_lines=skipped,
    )


def read_console_log(path: Path, src: Path) -> Converted:
    """A data/ console log: ``node,AXIS,t_ms,value`` lines among the script's messages."""
    readings: dict[str, list[tuple[float, float]]] = {axis: [] for axis in _AXES}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LOG_LINE.match(line.strip())
        if match:
            readings[match[1]].append((float(match[2]), float(match[3])))
    times = sorted({t for axis in _AXES for t, _ in readings[axis]})
    rows: list[list[str]] = []
    motion = [readings[axis] for axis in _AXES[:6]]
    if all(motion):
        start = max(min(t for t, _ in r) for r in motion)
        end = min(max(t for t, _ in r) for r in motion)
        for t in (t for t in times if start <= t <= end):
            values = [_interpolate(sorted(readings[axis]), t) for axis in _AXES]
            rows.append([f"{t / 1000:.3f}", *("" if v is None else f"{v:.4g}" for v in values)])
    return Converted(
        source=path.relative_to(src).as_posix(),
        out_name=f"data_{path.stem}.csv",
        exercise=FOLDERS[path.parent.name],
        reps=_reps(path.stem),
        times_ms=times,
        rows=rows,
    )


def convert(src: Path, out: Path) -> list[Converted]:
    """Write OUT from SRC; return the sets converted (in the labels file's order)."""
    folders = check_source(src)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out} exists and is not an empty folder: give a new one")
    sets: list[Converted] = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if folder.parent.name == "data2" and path.suffix == ".csv":
                sets.append(read_data2(path, src))
            elif folder.parent.name == "data" and path.suffix == ".log":
                sets.append(read_console_log(path, src))
    if not sets:
        raise ConversionError(f"{src}: no squat or deadlift recording found in {folders}")
    out.mkdir(parents=True, exist_ok=True)
    for item in sets:
        item.measure()
        with (out / item.out_name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(OUT_COLUMNS)
            writer.writerows(item.rows)
    with (out / LABELS_FILE).open("w", newline="", encoding="utf-8") as handle:
        handle.write(
            f"# {REPOSITORY}: squats, deadlifts and Romanian deadlifts of a bar-mounted IMU,\n"
            f"# converted by tools/wireless_imu_activity_tracking.py. Reps from the file names.\n"
        )
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LABEL_COLUMNS)
        for item in sets:
            reps = "" if item.reps is None else str(item.reps)
            aside = "; ".join(item.reasons)
            writer.writerow([item.out_name, "bar", item.exercise, reps, aside, item.note()])
    return sets


def _reps(stem: str) -> int | None:
    match = _REPS.search(stem)
    return int(match[1]) if match else None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _seconds(ms: str) -> str:
    """Milliseconds as written, in seconds, exactly (no binary rounding on the way)."""
    whole, _, fraction = ms.partition(".")
    sign = "-" if whole.startswith("-") else ""
    digits = whole.lstrip("-").rjust(4, "0")
    return f"{sign}{int(digits[:-3])}.{digits[-3:]}{fraction}"


def _interpolate(readings: list[tuple[float, float]], t: float) -> float | None:
    """The reading at ``t``, linear between the readings either side; None outside them."""
    if not readings or t < readings[0][0] or t > readings[-1][0]:
        return None
    for (t0, v0), (t1, v1) in itertools.pairwise(readings):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return readings[-1][1]


def main(argv: list[str] | None = None) -> int:
    """Convert, print what was written and what was set aside; exit status 2 on an error."""
    parser = argparse.ArgumentParser(
        prog="wireless_imu_activity_tracking.py",
        description=f"Convert the squat and deadlift sets of {REPOSITORY} (a checkout at SRC) "
        "into a labelled folder OUT for `sensorhub evaluate --recordings OUT`.",
    )
    parser.add_argument("src", type=Path, metavar="SRC", help=f"a checkout of {REPOSITORY}")
    parser.add_argument("out", type=Path, metavar="OUT", help="a new folder to write")
    args = parser.parse_args(argv)
    try:
        sets = convert(args.src, args.out)
    except (ConversionError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    aside = [item for item in sets if item.reasons]
    for item in sets:
        state = f"set aside: {'; '.join(item.reasons)}" if item.reasons else f"{item.reps} reps"
        print(f"{item.out_name}: {item.exercise}, {state}")
    print(
        f"wrote {len(sets)} sets to {args.out} ({len(sets) - len(aside)} to score, "
        f"{len(aside)} set aside); next: sensorhub evaluate --recordings {args.out} --json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
