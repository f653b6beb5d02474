"""Accuracy on a person's own labelled recordings: the labels file, and the evaluation.

A folder of recordings (CSV files as ``sensorhub analyze`` takes them) and, beside them,
``labels.csv``: one line per recording, written by hand or exported from a linear
position transducer's or a motion-capture system's software::

    # Squats on the transducer, 12 May. Lines starting with # are comments.
    file,role,exercise,reps,mcv_mps,peak_velocity_mps,accel_unit,set_aside,note
    squat_100kg.csv,bar,squat,3,0.61;0.58;0.52,1.10;1.04;0.97,,,"belt on, 100 kg"
    thrust.csv,pelvis,hip_thrust,8,,,g,,
    warmup.csv,bar,squat,,,,,the sensor slipped on the bar,

Columns (the header line names them, in any order; cells may be left empty):

``file`` (required)
    The recording, relative to the folder; listed once.
``role`` (required)
    Where the sensor was worn: ``bar`` or ``pelvis``.
``exercise`` (required)
    One of :data:`~sensorhub.analysis.exercises.EXERCISES`.
``reps`` (required unless set aside)
    The full reps in the file (a partial rep, lockout not reached, is not counted). A
    file is one set; for a file of several sets give the total.
``accel_unit``, ``gyro_unit``
    ``m/s2`` (default) or ``g``; ``rad/s`` (default) or ``deg/s``.
``mcv_mps``, ``peak_velocity_mps``, ``rom_m``
    Reference values per full rep, in order, separated by ``;``: mean concentric
    velocity and peak velocity (m/s), range of motion (m). As many as ``reps``.
``set_aside``
    A reason: the file is listed but not scored, and the output shows it with the reason.
``note``
    Anything; shown in the output.

A label that cannot be used is a :class:`LabelError` naming the file and the line.

The evaluation runs every file not set aside through
:func:`~sensorhub.analysis.analyze.analyze_recording` (in worker processes if asked)
and scores it with :class:`~sensorhub.analysis.scoring.CountScore`: sets counted
exactly, within one rep, rep count error, and per-rep errors against the references of
the files counted exactly.
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from sensorhub.analysis.analyze import analyze_recording
from sensorhub.analysis.exercises import EXERCISES
from sensorhub.analysis.scoring import CountScore
from sensorhub.analysis.units import AccelUnit, GyroUnit
from sensorhub.errors import ConfigError, SensorhubError
from sensorhub.registry import ROLES, Role

__all__ = [
    "COLUMNS",
    "LABELS_FILE",
    "FileOutcome",
    "Label",
    "LabelError",
    "evaluate_recordings",
    "format_report",
    "read_labels",
    "score_label",
]

LABELS_FILE: Final = "labels.csv"
REQUIRED: Final = ("file", "role", "exercise", "reps")
REFERENCES: Final = ("mcv_mps", "peak_velocity_mps", "rom_m")
COLUMNS: Final = (*REQUIRED, "accel_unit", "gyro_unit", *REFERENCES, "set_aside", "note")
ACCEL_UNITS: Final[tuple[AccelUnit, ...]] = get_args(AccelUnit)
GYRO_UNITS: Final[tuple[GyroUnit, ...]] = get_args(GyroUnit)
_WHOLE: Final = re.compile(r"^\d+$")
Status = Literal["scored", "set_aside", "failed"]


class LabelError(ConfigError):
    """A labels file that cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True)
class Label:
    """One recording as its labels file describes it; references per full rep, in order."""

    path: Path
    name: str
    """The file as the labels file names it."""
    line: int
    role: Role
    exercise: str
    reps: int | None
    """None only for a file set aside."""
    accel_unit: AccelUnit = "m/s2"
    gyro_unit: GyroUnit = "rad/s"
    mcv_mps: tuple[float, ...] = ()
    peak_velocity_mps: tuple[float, ...] = ()
    rom_m: tuple[float, ...] = ()
    set_aside: str | None = None
    note: str | None = None


def read_labels(directory: Path) -> list[Label]:
    """Read ``directory/labels.csv``; raise :class:`LabelError` naming the line at fault."""
    if not directory.is_dir():
        raise LabelError(f"{directory} is not a folder of recordings")
    source = directory / LABELS_FILE
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(
            f"{directory} has no {LABELS_FILE}: write one beside the recordings, a line per "
            f"file with the columns {', '.join(REQUIRED)} (README: Accuracy on your recordings)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"cannot read {source}: {exc}") from exc
    rows = _rows(source, text)
    header_line, header = next(rows, (0, []))
    if not header:
        raise LabelError(f"{source}: no header line; expected columns {', '.join(REQUIRED)}")
    columns = _columns(source, header_line, header)
    labels: list[Label] = []
    seen: dict[Path, int] = {}
    for line, cells in rows:
        where = f"{source}, line {line}"
        if len(cells) > len(columns):
            raise LabelError(
                f"{where}: {len(cells)} cells, but the header names {len(columns)} columns "
                '(quote a cell that holds a comma: "like, this")'
            )
        values = dict(zip(columns, [c.strip() for c in cells], strict=False))
        label = _label(directory, where, line, values)
        key = label.path.resolve()
        if key in seen:
            raise LabelError(f"{where}: {label.name} is listed already, on line {seen[key]}")
        seen[key] = line
        labels.append(label)
    if not labels:
        raise LabelError(f"{source} lists no recording (only a header and comments)")
    return labels


def _rows(source: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each line that is neither blank nor a # comment."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            yield number, next(csv.reader([line]))
        except csv.Error as exc:
            raise LabelError(f"{source}, line {number}: not a CSV line ({exc})") from None


def _columns(source: Path, line: int, header: list[str]) -> list[str]:
    columns = [name.strip().lower() for name in header]
    where = f"{source}, line {line}"
    for name in columns:
        if name not in COLUMNS:
            raise LabelError(f"{where}: unknown column {name!r}; known: {', '.join(COLUMNS)}")
        if columns.count(name) > 1:
            raise LabelError(f"{where}: column {name!r} appears twice")
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise LabelError(f"{where}: the header lacks column(s) {', '.join(missing)}")
    return columns


def _label(directory: Path, where: str, line: int, values: dict[str, str]) -> Label:
    name = values.get("file", "")
    if not name:
        raise LabelError(f"{where}: file is empty; name the recording")
    path = directory / name
    if not path.is_file():
        raise LabelError(f"{where}: file {name!r} is not in {directory}")
    role = values.get("role", "")
    if role not in ROLES:
        raise LabelError(f"{where}: role {role!r} unknown; one of {', '.join(ROLES)}")
    exercise = values.get("exercise", "")
    if exercise not in EXERCISES:
        raise LabelError(f"{where}: exercise {exercise!r} unknown; one of {', '.join(EXERCISES)}")
    accel_unit = values.get("accel_unit") or "m/s2"
    if accel_unit not in ACCEL_UNITS:
        raise LabelError(f"{where}: accel_unit {accel_unit!r}: one of {', '.join(ACCEL_UNITS)}")
    gyro_unit = values.get("gyro_unit") or "rad/s"
    if gyro_unit not in GYRO_UNITS:
        raise LabelError(f"{where}: gyro_unit {gyro_unit!r}: one of {', '.join(GYRO_UNITS)}")
    set_aside = values.get("set_aside") or None
    text = values.get("reps", "")
    reps: int | None = None
    if text:
        if not _WHOLE.match(text):
            raise LabelError(f"{where}: reps {text!r} is not a whole number of reps")
        reps = int(text)
    elif set_aside is None:
        raise LabelError(f"{where}: reps is empty; give the full reps (empty only if set aside)")
    references = {
        column: _references(where, column, values.get(column, ""), reps) for column in REFERENCES
    }
    return Label(
        path=path,
        name=name,
        line=line,
        role=role,
        exercise=exercise,
        reps=reps,
        accel_unit=accel_unit,
        gyro_unit=gyro_unit,
        mcv_mps=references["mcv_mps"],
        peak_velocity_mps=references["peak_velocity_mps"],
        rom_m=references["rom_m"],
        set_aside=set_aside,
        note=values.get("note") or None,
    )


def _references(where: str, column: str, text: str, reps: int | None) -> tuple[float, ...]:
    if not text:
        return ()
    values: list[float] = []
    for number, item in enumerate(text.split(";"), start=1):
        try:
            value = float(item)
        except ValueError:
            raise LabelError(
                f"{where}: {column} value {number} ({item.strip()!r}) is not a number; "
                "separate the reps' values with ;"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise LabelError(f"{where}: {column} value {number} ({value:g}) must be positive")
        values.append(value)
    if reps is not None and len(values) != reps:
        raise LabelError(
            f"{where}: {column} has {len(values)} value(s) but reps is {reps}: "
            "give one per full rep, in order"
        )
    return tuple(values)


# The evaluation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What became of one labelled file: scored, set aside or failed, and its figures."""

    label: Label
    status: Status
    found_reps: int | None = None
    sets_found: int | None = None
    reason: str | None = None
    """Why set aside, why the analysis failed, or why it found no rep."""
    mcv_errors: tuple[float, ...] = ()
    peak_errors: tuple[float, ...] = ()
    rom_errors: tuple[float, ...] = ()
    seconds: float = 0.0

    def line(self) -> str:
        """One line for people: the file and what became of it."""
        name = self.label.name
        if self.status == "set_aside":
            return f"{name}: set aside: {self.reason}"
        if self.status == "failed":
            return f"{name}: failed: {self.reason}"
        error = (self.found_reps or 0) - (self.label.reps or 0)
        return (
            f"{name}: expected {self.label.reps}, found {self.found_reps} ({error:+d}) "
            f"in {self.seconds:.1f} s"
        )


def score_label(label: Label, set_gap_s: float | None = None) -> FileOutcome:
    """Analyse one labelled file and compare it with its label (never raises for the file).

    A file the analysis refuses (its units, its rate, no neutral pose) is ``"failed"``
    with the analysis's message; so is one that meets an error in the analysis itself,
    which is named as such, so that one file cannot cost the others' results.
    """
    if label.set_aside is not None or label.reps is None:
        return FileOutcome(label, "set_aside", reason=label.set_aside)
    started = time.monotonic()
    try:
        result = analyze_recording(
            label.path,
            role=label.role,
            exercise=label.exercise,
            accel_unit=label.accel_unit,
            gyro_unit=label.gyro_unit,
            set_gap_s=set_gap_s,
        )
    except SensorhubError as exc:
        return FileOutcome(label, "failed", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - reported as the analysis's fault, others go on
        return FileOutcome(
            label, "failed", reason=f"error in the analysis: {type(exc).__name__}: {exc}"
        )
    found = [item.rep for item in result.reps if not item.rep.partial]
    errors: dict[str, tuple[float, ...]] = {"mcv_mps": (), "peak_velocity_mps": (), "rom_m": ()}
    if len(found) == label.reps:
        for column in errors:
            references = getattr(label, column)
            if references:
                errors[column] = tuple(
                    getattr(rep, column) - ref for rep, ref in zip(found, references, strict=True)
                )
    return FileOutcome(
        label,
        "scored",
        found_reps=len(found),
        sets_found=len(result.sets),
        reason=result.no_reps_reason,
        mcv_errors=errors["mcv_mps"],
        peak_errors=errors["peak_velocity_mps"],
        rom_errors=errors["rom_m"],
        seconds=time.monotonic() - started,
    )


def evaluate_recordings(
    directory: Path,
    *,
    set_gap_s: float | None = None,
    workers: int = 1,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Score every file of a labelled folder; return the report ``--json`` prints.

    ``progress`` gets a line per file as it is done (in the order they finish).
    """
    labels = read_labels(directory)
    started = time.monotonic()
    outcomes = _outcomes(labels, set_gap_s, workers, progress)
    total = _Totals()
    by_exercise: dict[str, _Totals] = {}
    for outcome in outcomes:
        total.add(outcome)
        by_exercise.setdefault(outcome.label.exercise, _Totals()).add(outcome)
    return {
        "recordings": str(directory),
        "labels": str(directory / LABELS_FILE),
        "files": [_outcome_json(outcome) for outcome in outcomes],
        "all": total.figures(),
        "by_exercise": {name: by_exercise[name].figures() for name in sorted(by_exercise)},
        "_meta": {
            "set_gap_s": set_gap_s,
            "workers": workers,
            "seconds": round(time.monotonic() - started, 1),
        },
    }


def _outcomes(
    labels: list[Label],
    set_gap_s: float | None,
    workers: int,
    progress: Callable[[str], None],
) -> list[FileOutcome]:
    done = 0

    def report(outcome: FileOutcome) -> FileOutcome:
        nonlocal done
        done += 1
        progress(f"[{done}/{len(labels)}] {outcome.line()}")
        return outcome

    aside = [label.set_aside is not None or label.reps is None for label in labels]
    outcomes: list[FileOutcome | None] = [
        report(score_label(label)) if skip else None
        for label, skip in zip(labels, aside, strict=True)
    ]
    todo = [i for i, skip in enumerate(aside) if not skip]
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            outcomes[i] = report(score_label(labels[i], set_gap_s))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            futures: dict[Future[FileOutcome], int] = {
                pool.submit(score_label, labels[i], set_gap_s): i for i in todo
            }
            for future in as_completed(futures):
                outcomes[futures[future]] = report(future.result())
    return [outcome for outcome in outcomes if outcome is not None]


@dataclass
class _Totals:
    score: CountScore = field(default_factory=CountScore)
    set_aside: int = 0
    failed: int = 0

    def add(self, outcome: FileOutcome) -> None:
        if outcome.status == "set_aside":
            self.set_aside += 1
        elif outcome.status == "failed":
            self.failed += 1
        else:
            assert outcome.found_reps is not None
            assert outcome.label.reps is not None
            self.score.add_file(outcome.label.reps, outcome.found_reps)
            self.score.add_rep_errors(
                mcv=outcome.mcv_errors, peak=outcome.peak_errors, rom=outcome.rom_errors
            )

    def figures(self) -> dict[str, Any]:
        return {**self.score.figures(), "set_aside": self.set_aside, "failed": self.failed}


def _outcome_json(outcome: FileOutcome) -> dict[str, Any]:
    label = outcome.label
    scored = outcome.status == "scored"
    error = (
        outcome.found_reps - label.reps
        if scored and outcome.found_reps is not None and label.reps is not None
        else None
    )
    return {
        "file": label.name,
        "line": label.line,
        "role": label.role,
        "exercise": label.exercise,
        "status": outcome.status,
        "expected_reps": label.reps,
        "found_reps": outcome.found_reps,
        "rep_error": error,
        "sets_found": outcome.sets_found,
        "reason": outcome.reason,
        "note": label.note,
        "mcv_errors_mps": _rounded(outcome.mcv_errors, 4) if label.mcv_mps else None,
        "peak_velocity_errors_mps": (
            _rounded(outcome.peak_errors, 4) if label.peak_velocity_mps else None
        ),
        "rom_errors_m": _rounded(outcome.rom_errors, 4) if label.rom_m else None,
        "seconds": round(outcome.seconds, 2),
    }


def _rounded(values: tuple[float, ...], digits: int) -> list[float]:
    return [round(v, digits) for v in values]


def format_report(report: dict[str, Any]) -> str:
    """The report as text for people: a line per file, then the figures per exercise."""
    lines = [f"{report['labels']}: {len(report['files'])} file(s)"]
    width = max((len(f["file"]) for f in report["files"]), default=4)
    lines.append(
        f"{'file':<{width}}  {'exercise':<22}{'expected':>9}{'found':>7}{'error':>7}{'sets':>6}"
    )
    for entry in report["files"]:
        name = f"{entry['file']:<{width}}  {entry['exercise']:<22}"
        if entry["status"] == "scored":
            lines.append(
                f"{name}{entry['expected_reps']:>9}{entry['found_reps']:>7}"
                f"{entry['rep_error']:>+7d}{entry['sets_found']:>6}"
                + (f"   ({entry['reason']})" if entry["reason"] else "")
            )
        else:
            what = "set aside" if entry["status"] == "set_aside" else "FAILED"
            lines.append(f"{name}   {what}: {entry['reason']}")
    groups = {**report["by_exercise"], "all": report["all"]}
    lines += ["", f"{'figure':<28}" + "".join(f"{name:>22}" for name in groups)]
    for title, cell in _ROWS:
        lines.append(
            f"{title:<28}" + "".join(f"{cell(figures):>22}" for figures in groups.values())
        )
    return "\n".join(lines)


def _value(key: str, spec: str, count: str | None = None) -> Callable[[dict[str, Any]], str]:
    """A cell: the figure ``key`` formatted by ``spec`` (``%``: a rate), with a count."""

    def cell(figures: dict[str, Any]) -> str:
        value = figures.get(key)
        if value is None:
            return "—"
        text = f"{value * 100:.1f} %" if spec == "%" else f"{value:{spec}}"
        return f"{text} ({figures[count]})" if count else text

    return cell


_ROWS: Final[tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]] = (
    ("files scored", _value("files", "d")),
    ("sets counted exactly", _value("exact_set_rate", "%")),
    ("within one rep", _value("within_one_rep_rate", "%")),
    ("reps expected / found", lambda f: f"{f['expected_reps']} / {f['found_reps']}"),
    ("rep count error, mean |e|", _value("rep_count_mae", ".2f")),
    ("rep count error, mean", _value("rep_count_bias", "+.2f")),
    ("MCV RMSE, m/s (reps)", _value("mcv_rmse_mps", ".3f", "mcv_reps")),
    ("MCV bias, m/s", _value("mcv_bias_mps", "+.3f")),
    ("peak velocity RMSE, m/s", _value("peak_velocity_rmse_mps", ".3f", "peak_velocity_reps")),
    ("ROM RMSE, m (reps)", _value("rom_rmse_m", ".3f", "rom_reps")),
    ("set aside / failed", lambda f: f"{f['set_aside']} / {f['failed']}"),
)
