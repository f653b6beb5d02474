"""Commands that arrive on the command topic: parsed, checked, and answered.

A command is one JSON object, e.g. ``{"command": "set_load", "athlete": "ann",
"load_kg": 100, "id": "42"}``. Anything on the topic is untrusted: :func:`parse_command`
raises only :class:`~sensorhub.errors.CommandError`, whose message says what was wrong
and what would be right, and that message goes back in the reply. ``schemas/command.json``
describes the same rules for other tools.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sensorhub.analysis.exercises import EXERCISES
from sensorhub.errors import CommandError

__all__ = [
    "COMMANDS",
    "EXERCISES",
    "Command",
    "error_reply",
    "ok_reply",
    "parse_command",
    "reply_ids",
]

ROLES: Final = ("bar", "pelvis")
MAX_PAYLOAD_BYTES: Final = 16_384
MAX_ID_CHARS: Final = 64
MAX_NAME_CHARS: Final = 64
MAX_NOTE_CHARS: Final = 1000
MAX_LOAD_KG: Final = 1000.0
_ADDRESS: Final = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command: its name, the caller's ``id`` (echoed in the reply), its fields."""

    name: str
    id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


Check = Callable[[str, object], Any]
"""Checks one field (name, value) and returns the value to use; raises CommandError."""


def _text(max_chars: int, *, empty_ok: bool = False) -> Check:
    def check(name: str, value: object) -> str:
        if not isinstance(value, str):
            raise CommandError(f"{name} must be a string, not {_kind(value)}")
        if not value.strip() and not empty_ok:
            raise CommandError(f"{name} must not be empty")
        if len(value) > max_chars:
            raise CommandError(f"{name} is {len(value)} characters long; at most {max_chars}")
        if any(ord(c) < 32 and c not in "\t\n" for c in value):
            raise CommandError(f"{name} must not contain control characters")
        return value

    return check


def _choice(*choices: str) -> Check:
    def check(name: str, value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise CommandError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    return check


def _number(low: float, high: float, unit: str) -> Check:
    def check(name: str, value: object) -> float:
        # bool is an int to Python but not a number to anyone writing JSON.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(f"{name} must be a number ({unit}), not {_kind(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or not low <= number <= high:
            raise CommandError(f"{name} = {value} {unit} is out of range; use {low:g} to {high:g}")
        return number

    return check


def _address(name: str, value: object) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise CommandError(
            f"{name} must be a Bluetooth address like AA:BB:CC:DD:EE:FF; got {value!r}"
        )
    return value.upper()


_ATHLETE: Final = _text(MAX_NAME_CHARS)

COMMANDS: Final[dict[str, tuple[dict[str, Check], dict[str, Check]]]] = {
    # name: (required fields, optional fields)
    "start_session": (
        {},
        {
            "athlete": _ATHLETE,
            "exercise": _choice(*EXERCISES),
            "note": _text(MAX_NOTE_CHARS, empty_ok=True),
        },
    ),
    "stop_session": ({}, {}),
    "set_load": ({"athlete": _ATHLETE, "load_kg": _number(0.0, MAX_LOAD_KG, "kg")}, {}),
    "pair": (
        {"address": _address, "role": _choice(*ROLES), "athlete": _ATHLETE},
        {"name": _text(MAX_NAME_CHARS)},
    ),
    "forget": ({"address": _address}, {}),
    "calibrate": ({"athlete": _ATHLETE}, {}),
}
"""Every command with its required and optional fields (besides ``command`` and ``id``)."""


def parse_command(payload: bytes) -> Command:
    """The command in one MQTT payload; raises CommandError saying what is wrong."""
    obj = _json_object(payload)
    command_id = _command_id(obj)
    name = obj.get("command")
    if name is None:
        raise CommandError(
            'no "command" field; send e.g. {"command": "stop_session"} '
            f"(commands: {', '.join(COMMANDS)})"
        )
    if not isinstance(name, str) or name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; the commands are {', '.join(COMMANDS)}")
    required, optional = COMMANDS[name]
    fields = {k: v for k, v in obj.items() if k not in {"command", "id"}}
    if extra := sorted(set(fields) - set(required) - set(optional)):
        allowed = sorted(set(required) | set(optional))
        raise CommandError(
            f"{name}: unknown field{'s' if len(extra) > 1 else ''} {', '.join(extra)}; "
            + (f"its fields are {', '.join(allowed)}" if allowed else "it takes no fields")
        )
    if missing := [k for k in required if k not in fields]:
        raise CommandError(f"{name}: missing {', '.join(missing)}")
    checks = required | optional
    args = {key: checks[key](key, value) for key, value in fields.items()}
    return Command(name, command_id, args)


def reply_ids(payload: bytes) -> tuple[str | None, str | None]:
    """The ``id`` and ``command`` of a payload, as far as they can be read (for error replies)."""
    try:
        obj = json.loads(payload, object_pairs_hook=_marking_twice)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    command_id, name = obj.get("id"), obj.get("command")
    return (
        command_id if isinstance(command_id, str) and len(command_id) <= MAX_ID_CHARS else None,
        name if isinstance(name, str) and name in COMMANDS else None,
    )


def ok_reply(command: Command, result: Mapping[str, Any]) -> dict[str, Any]:
    """The reply to a command that was carried out."""
    return {"id": command.id, "command": command.name, "ok": True, "result": dict(result)}


def error_reply(command_id: str | None, name: str | None, message: str) -> dict[str, Any]:
    """The reply to a command that was refused or failed."""
    return {"id": command_id, "command": name, "ok": False, "error": message}


def _json_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"command is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"command is not UTF-8 text (byte {exc.start}); send JSON") from None
    try:
        obj = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_once_each)
    except CommandError:
        raise
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"command is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            'send e.g. {"command": "stop_session"}'
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise CommandError(f"command JSON cannot be read: {exc}") from None
    except RecursionError:
        raise CommandError("command JSON is nested too deeply") from None
    if not isinstance(obj, dict):
        raise CommandError(
            f'command must be a JSON object like {{"command": "stop_session"}}, not {_kind(obj)}'
        )
    return obj


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: with two, which one was meant is a guess."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise CommandError(f"{key!r} is given twice; give each field once")
        obj[key] = value
    return obj


class _Twice:
    """Stands for a value given under one key twice (for replies, which echo none of them)."""


def _marking_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        obj[key] = _Twice() if key in obj else value
    return obj


def _no_constant(name: str) -> object:
    raise CommandError(f"{name} is not JSON; send a finite number")


def _command_id(obj: Mapping[str, Any]) -> str | None:
    if "id" not in obj:
        return None
    value = obj["id"]
    if not isinstance(value, str):
        raise CommandError(f"id must be a string, not {_kind(value)}")
    if len(value) > MAX_ID_CHARS:
        raise CommandError(f"id is {len(value)} characters long; at most {MAX_ID_CHARS}")
    return value


def _kind(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
