"""Commands: every valid form parses, everything else is a CommandError that says why."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorhub.errors import CommandError
from sensorhub.mqtt import COMMANDS, Command, parse_command, schema
from sensorhub.mqtt.commands import error_reply, ok_reply, reply_ids

VALID: list[tuple[dict[str, Any], Command]] = [
    ({"command": "stop_session"}, Command("stop_session")),
    ({"command": "start_session", "id": "1"}, Command("start_session", "1")),
    (
        {"command": "start_session", "athlete": "ann", "exercise": "squat", "note": ""},
        Command("start_session", None, {"athlete": "ann", "exercise": "squat", "note": ""}),
    ),
    (
        {"command": "set_load", "athlete": "ann", "load_kg": 102.5},
        Command("set_load", None, {"athlete": "ann", "load_kg": 102.5}),
    ),
    (
        {"command": "set_load", "athlete": "ann", "load_kg": 0},
        Command("set_load", None, {"athlete": "ann", "load_kg": 0.0}),
    ),
    (
        {"command": "pair", "address": "aa:bb:cc:dd:ee:ff", "role": "pelvis", "athlete": "ann"},
        Command("pair", None, {"address": "AA:BB:CC:DD:EE:FF", "role": "pelvis", "athlete": "ann"}),
    ),
    (
        {
            "command": "pair",
            "address": "AA:BB:CC:DD:EE:FF",
            "role": "bar",
            "athlete": "b",
            "name": "x",
        },
        Command(
            "pair",
            None,
            {"address": "AA:BB:CC:DD:EE:FF", "role": "bar", "athlete": "b", "name": "x"},
        ),
    ),
    (
        {"command": "forget", "address": "AA:BB:CC:DD:EE:FF", "id": "x" * 64},
        Command("forget", "x" * 64, {"address": "AA:BB:CC:DD:EE:FF"}),
    ),
    ({"command": "calibrate", "athlete": "ann"}, Command("calibrate", None, {"athlete": "ann"})),
]

INVALID: list[tuple[bytes, str]] = [
    (b"\xff\xfe", "not UTF-8"),
    (b"stop_session", "not JSON"),
    (b"", "not JSON"),
    (b'["stop_session"]', "JSON object"),
    (b'"stop_session"', "JSON object"),
    (b"{}", 'no "command"'),
    (b'{"command": "reboot"}', "unknown command 'reboot'"),
    (b'{"command": 3}', "unknown command 3"),
    (b'{"command": "stop_session", "force": true}', "unknown field force"),
    (b'{"command": "stop_session", "id": 7}', "id must be a string"),
    (b'{"command": "stop_session", "id": "' + b"x" * 65 + b'"}', "at most 64"),
    (b'{"command": "set_load", "athlete": "ann"}', "missing load_kg"),
    (b'{"command": "set_load", "load_kg": 5}', "missing athlete"),
    (b'{"command": "set_load", "athlete": "ann", "load_kg": "100"}', "must be a number"),
    (b'{"command": "set_load", "athlete": "ann", "load_kg": true}', "must be a number"),
    (b'{"command": "set_load", "athlete": "ann", "load_kg": -1}', "out of range"),
    (b'{"command": "set_load", "athlete": "ann", "load_kg": 1000.5}', "out of range"),
    (b'{"command": "set_load", "athlete": "ann", "load_kg": NaN}', "NaN is not JSON"),
    (b'{"command": "set_load", "athlete": "ann", "load_kg": 1e999}', "out of range"),
    (b'{"command": "set_load", "athlete": "", "load_kg": 1}', "must not be empty"),
    (b'{"command": "set_load", "athlete": 5, "load_kg": 1}', "athlete must be a string"),
    (b'{"command": "start_session", "exercise": "bench"}', "exercise must be one of"),
    (
        b'{"command": "pair", "address": "AA:BB", "role": "bar", "athlete": "a"}',
        "Bluetooth address",
    ),
    (b'{"command": "pair", "address": "AA:BB:CC:DD:EE:FF", "role": "arm", "athlete": "a"}', "role"),
    (b'{"command": "forget"}', "missing address"),
    (b'{"command": "calibrate", "athlete": "a\\u0000b"}', "control characters"),
    (b'{"command": "start_session", "command": "stop_session"}', "'command' is given twice"),
    (b'{"command": "set_load", "athlete": "a", "load_kg": 1, "load_kg": 2}', "given twice"),
    (b'{"id": "1", "command": "stop_session", "id": "2"}', "'id' is given twice"),
]


@pytest.mark.parametrize(("payload", "expected"), VALID)
def test_valid_commands(payload: dict[str, Any], expected: Command) -> None:
    assert parse_command(json.dumps(payload).encode()) == expected
    jsonschema.validate(payload, schema("command"))


@pytest.mark.parametrize(("payload", "says"), INVALID)
def test_invalid_commands_say_why(payload: bytes, says: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(payload)
    assert says in str(caught.value)


@pytest.mark.parametrize(("payload", "says"), INVALID)
def test_the_schema_refuses_them_too(payload: bytes, says: str) -> None:
    try:
        obj = json.loads(payload)
    except ValueError:
        return  # not JSON at all: nothing for a schema to say
    beyond = ("control characters", "NaN", "given twice")  # a schema sees one value per key
    if any(b in says for b in beyond) or "1e999" in payload.decode():
        return  # beyond what JSON Schema checks
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, schema("command"))


def test_every_command_has_a_schema_branch() -> None:
    branches = {b["properties"]["command"]["const"] for b in schema("command")["oneOf"]}
    assert branches == set(COMMANDS)


def test_replies_validate_and_keep_ids() -> None:
    assert reply_ids(b'{"id": "7", "command": "pair", "address": 1}') == ("7", "pair")
    assert reply_ids(b'{"id": 7, "command": "bogus"}') == (None, None)
    assert reply_ids(b"\xff") == (None, None)
    # Given twice, neither value is echoed: which one was meant is a guess.
    assert reply_ids(b'{"id": "7", "command": "pair", "command": "forget"}') == ("7", None)
    assert reply_ids(b'{"id": "7", "id": "8", "command": "pair"}') == (None, "pair")
    ok = ok_reply(Command("stop_session", "9"), {"session_id": 3})
    error = error_reply(None, None, "not JSON")
    for reply in (ok, error):
        jsonschema.validate(reply, schema("command_response"))
    assert ok == {"id": "9", "command": "stop_session", "ok": True, "result": {"session_id": 3}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.binary(max_size=300))
def test_fuzz_bytes_raise_only_command_error(payload: bytes) -> None:
    with contextlib.suppress(CommandError):
        parse_command(payload)


@given(json_values)
def test_fuzz_json_raises_only_command_error(value: object) -> None:
    with contextlib.suppress(CommandError):
        parse_command(json.dumps(value).encode())


@given(
    st.sampled_from(sorted(COMMANDS)),
    st.dictionaries(
        st.sampled_from(
            ["id", "athlete", "load_kg", "address", "role", "name", "note", "exercise", "x"]
        ),
        json_values,
        max_size=5,
    ),
)
def test_fuzz_command_fields_raise_only_command_error(name: str, fields: dict[str, Any]) -> None:
    try:
        command = parse_command(json.dumps({"command": name, **fields}).encode())
    except CommandError:
        return
    assert command.name == name
    json.dumps(command.args, allow_nan=False)  # what passes is plain, finite JSON
