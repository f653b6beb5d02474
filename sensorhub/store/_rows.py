"""Rows in and out of the store: settings checked, record fields converted, SQL split."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from sensorhub.analysis.exercises import EXERCISES
from sensorhub.errors import ConfigError
from sensorhub.store.schema import Column


def statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, one by one."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()!r}")


def check_load(athlete: str, load_kg: object) -> None:
    if load_kg is None:
        return
    if isinstance(load_kg, bool) or not isinstance(load_kg, int | float):
        raise ConfigError(f"load_kg of {athlete!r} must be a number of kg or None, not {load_kg!r}")
    if not (math.isfinite(load_kg) and 0 <= load_kg < 2000):
        raise ConfigError(f"load_kg of {athlete!r} must be 0..2000 kg, not {load_kg!r}")


def athlete_settings(
    name: str, settings: dict[str, Any]
) -> tuple[str, float | None, float | None, float | None]:
    if not name.strip():
        raise ConfigError("athlete name must not be empty")
    exercise = settings.get("exercise")
    if exercise not in EXERCISES:
        raise ConfigError(f"exercise {exercise!r} of {name!r} is not one of {', '.join(EXERCISES)}")
    load_kg = settings.get("load_kg")
    check_load(name, load_kg)
    optional: list[float | None] = []
    for key in ("set_gap_s", "velocity_loss_alert_pct"):
        value = settings.get(key)
        if value is not None and not (
            isinstance(value, int | float) and math.isfinite(value) and value > 0
        ):
            raise ConfigError(f"{key} of {name!r} must be a positive number, not {value!r}")
        optional.append(None if value is None else float(value))
    return exercise, None if load_kg is None else float(load_kg), optional[0], optional[1]


def sql_name(column: Column) -> str:
    """The table column that holds a record field."""
    return "athlete_id" if column.kind == "athlete" else column.name


def to_sql(column: Column, record: dict[str, Any], athlete_id: Callable[[str], int]) -> Any:
    """A record's field as stored (athletes by id, lists as JSON)."""
    value = record.get(column.name)
    if column.kind == "athlete":
        return athlete_id(str(value))
    if value is None:
        return None
    if column.kind == "bool":
        return int(bool(value))
    if column.kind == "real_list":
        return json.dumps(list(value))
    return value


def from_sql(column: Column, value: Any) -> Any:
    """A stored field as the record has it."""
    if value is None:
        return None
    if column.kind == "bool":
        return bool(value)
    if column.kind == "real_list":
        return json.loads(value)
    return value
