"""Scoring analysis output against ground truth: rep matching and the accuracy figures.

A detected rep matches a true one when their concentric phases overlap by at least half
of the true concentric; each true rep matches at most one detected rep (the largest
overlap). Partial reps count as reps for matching; a detected rep flagged partial that
matches a true partial rep is right, and one that matches a full rep is a miss of that
full rep (and vice versa), so flagging errors cost precision and recall.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class RepLike(Protocol):
    """What scoring needs of a rep, detected or true."""

    @property
    def t_start(self) -> float: ...
    @property
    def t_end(self) -> float: ...
    @property
    def concentric_start(self) -> float: ...
    @property
    def concentric_end(self) -> float: ...
    @property
    def mcv_mps(self) -> float: ...
    @property
    def peak_velocity_mps(self) -> float: ...
    @property
    def rom_m(self) -> float: ...
    @property
    def partial(self) -> bool: ...


def match_reps(detected: Sequence[RepLike], truth: Sequence[RepLike]) -> list[tuple[int, int]]:
    """Return (detected index, true index) pairs, greedily by largest concentric overlap."""
    candidates: list[tuple[float, int, int]] = []
    for j, true in enumerate(truth):
        span = max(1e-6, true.concentric_end - true.concentric_start)
        for i, rep in enumerate(detected):
            overlap = min(rep.concentric_end, true.concentric_end) - max(
                rep.concentric_start, true.concentric_start
            )
            if overlap >= 0.5 * span:
                candidates.append((overlap, i, j))
    pairs: list[tuple[int, int]] = []
    used_detected: set[int] = set()
    used_true: set[int] = set()
    for _, i, j in sorted(candidates, reverse=True):
        if i not in used_detected and j not in used_true:
            pairs.append((i, j))
            used_detected.add(i)
            used_true.add(j)
    return sorted(pairs, key=lambda pair: pair[1])


@dataclass
class ExerciseScore:
    """Accumulates the figures of one exercise over many scenarios."""

    sets: int = 0
    exact_sets: int = 0
    true_reps: int = 0
    detected_reps: int = 0
    correct_reps: int = 0
    mcv_errors: list[float] = field(default_factory=list)
    peak_errors: list[float] = field(default_factory=list)
    rom_errors: list[float] = field(default_factory=list)
    transducer_mcv_errors: list[float] = field(default_factory=list)
    tilt_errors: list[float] = field(default_factory=list)
    verdicts: int = 0
    verdicts_right: int = 0

    def add_reps(self, detected: Sequence[RepLike], truth: Sequence[RepLike]) -> None:
        """Score one recording's reps (IMU path)."""
        pairs = match_reps(detected, truth)
        self.true_reps += len(truth)
        self.detected_reps += len(detected)
        for i, j in pairs:
            rep, true = detected[i], truth[j]
            if rep.partial != true.partial:
                continue
            self.correct_reps += 1
            if not true.partial:
                self.mcv_errors.append(rep.mcv_mps - true.mcv_mps)
                self.peak_errors.append(rep.peak_velocity_mps - true.peak_velocity_mps)
                self.rom_errors.append(rep.rom_m - true.rom_m)

    def add_transducer_reps(self, detected: Sequence[RepLike], truth: Sequence[RepLike]) -> None:
        """Score the bar-velocity sensor's MCV (reps only matched, not counted again)."""
        for i, j in match_reps(detected, truth):
            if not truth[j].partial and not detected[i].partial:
                self.transducer_mcv_errors.append(detected[i].mcv_mps - truth[j].mcv_mps)

    def add_sets(
        self,
        detected_counts: Iterable[tuple[float, float, int]],
        truth: Iterable[tuple[float, float, int]],
    ) -> None:
        """Score set counting: (t_start, t_end, full reps) for detected and true sets.

        A true set is counted exactly when the detected set that overlaps it most has the
        same number of full reps and no other detected set overlaps it.
        """
        detected = list(detected_counts)
        for start, end, reps in truth:
            self.sets += 1
            overlapping = [d for d in detected if min(d[1], end) - max(d[0], start) > 0]
            if len(overlapping) == 1 and overlapping[0][2] == reps:
                self.exact_sets += 1

    def add_tilt(self, errors_deg: Iterable[float]) -> None:
        """Add sample-wise tilt errors (degrees) from inside true rep windows."""
        self.tilt_errors.extend(float(e) for e in errors_deg)

    def add_verdict(self, right: bool) -> None:
        """Count one full rep's posterior-tilt verdict."""
        self.verdicts += 1
        self.verdicts_right += int(right)

    def figures(self) -> dict[str, Any]:
        """The JSON figures ``sensorhub evaluate --json`` prints for this exercise."""
        precision = self.correct_reps / self.detected_reps if self.detected_reps else None
        recall = self.correct_reps / self.true_reps if self.true_reps else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision and recall
            else (0.0 if precision is not None and recall is not None else None)
        )
        return {
            "sets": self.sets,
            "exact_set_rate": _ratio(self.exact_sets, self.sets),
            "true_reps": self.true_reps,
            "detected_reps": self.detected_reps,
            "rep_precision": _round(precision),
            "rep_recall": _round(recall),
            "rep_f1": _round(f1),
            "mcv_rmse_mps": _rmse(self.mcv_errors),
            "mcv_bias_mps": _mean(self.mcv_errors),
            "peak_velocity_rmse_mps": _rmse(self.peak_errors),
            "rom_rmse_m": _rmse(self.rom_errors),
            "transducer_mcv_rmse_mps": _rmse(self.transducer_mcv_errors),
            "tilt_rmse_deg": _rmse(self.tilt_errors),
            "tilt_verdict_accuracy": _ratio(self.verdicts_right, self.verdicts),
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _rmse(errors: Sequence[float]) -> float | None:
    if not errors:
        return None
    return round(math.sqrt(sum(e * e for e in errors) / len(errors)), 4)


def _mean(errors: Sequence[float]) -> float | None:
    return round(sum(errors) / len(errors), 4) if errors else None


@dataclass
class CountScore:
    """Accumulates rep counts and per-rep reference errors over labelled recordings.

    One file is one labelled set: it is counted exactly when the full reps found equal
    the label's, within one when they differ by one at most. Per-rep errors (found minus
    reference) come only from files counted exactly, the k-th rep found against the
    k-th reference: with a rep missed or added, which rep is which is unknown.
    """

    files: int = 0
    exact: int = 0
    within_one: int = 0
    expected_reps: int = 0
    found_reps: int = 0
    count_errors: list[int] = field(default_factory=list)
    mcv_errors: list[float] = field(default_factory=list)
    peak_errors: list[float] = field(default_factory=list)
    rom_errors: list[float] = field(default_factory=list)

    def add_file(self, expected: int, found: int) -> None:
        """Score one file's rep count."""
        self.files += 1
        self.exact += int(found == expected)
        self.within_one += int(abs(found - expected) <= 1)
        self.expected_reps += expected
        self.found_reps += found
        self.count_errors.append(found - expected)

    def add_rep_errors(
        self, *, mcv: Iterable[float] = (), peak: Iterable[float] = (), rom: Iterable[float] = ()
    ) -> None:
        """Add per-rep errors, found minus reference: m/s for velocities, m for ROM."""
        self.mcv_errors.extend(mcv)
        self.peak_errors.extend(peak)
        self.rom_errors.extend(rom)

    def merge(self, other: CountScore) -> None:
        """Add another score's files and errors to this one."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def figures(self) -> dict[str, Any]:
        """The JSON figures ``sensorhub evaluate --recordings --json`` prints."""
        errors = self.count_errors
        return {
            "files": self.files,
            "exact_set_rate": _ratio(self.exact, self.files),
            "within_one_rep_rate": _ratio(self.within_one, self.files),
            "expected_reps": self.expected_reps,
            "found_reps": self.found_reps,
            "rep_count_mae": _mean([abs(e) for e in errors]),
            "rep_count_bias": _mean([float(e) for e in errors]),
            "mcv_reps": len(self.mcv_errors),
            "mcv_rmse_mps": _rmse(self.mcv_errors),
            "mcv_bias_mps": _mean(self.mcv_errors),
            "peak_velocity_reps": len(self.peak_errors),
            "peak_velocity_rmse_mps": _rmse(self.peak_errors),
            "peak_velocity_bias_mps": _mean(self.peak_errors),
            "rom_reps": len(self.rom_errors),
            "rom_rmse_m": _rmse(self.rom_errors),
            "rom_bias_m": _mean(self.rom_errors),
        }
