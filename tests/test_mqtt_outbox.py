"""The outbox keeps QoS 1 messages on disk, in order, until they are acknowledged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sensorhub.errors import StateError
from sensorhub.mqtt import Outbox, OutboxFullError


def test_order_seq_in_payload_and_ack(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        seqs = [outbox.put(f"t/{i}", {"type": "rep", "i": i}) for i in range(5)]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 5
        assert len(outbox) == 5
        messages = outbox.peek(3)
        assert [m.seq for m in messages] == seqs[:3]
        assert [json.loads(m.payload) for m in messages] == [
            {"type": "rep", "i": i, "seq": seqs[i]} for i in range(3)
        ]
        assert all(m.qos == 1 and not m.retain for m in messages)
        outbox.ack(seqs[1])
        assert len(outbox) == 3
        assert [m.seq for m in outbox.peek(10)] == seqs[2:]


def test_survives_reopen_and_seq_keeps_growing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        first = outbox.put("a", {"n": 1}, retain=True)
        second = outbox.put("b", {"n": 2})
        outbox.ack(second)  # everything acknowledged: the table is empty
        third = outbox.put("c", {"n": 3})
    with Outbox(path) as outbox:
        assert len(outbox) == 0 or [m.topic for m in outbox.peek(10)] == ["c"]
        assert [(m.topic, m.seq) for m in outbox.peek(10)] == [("c", third)]
        fourth = outbox.put("d", {"n": 4})
        # Never reused, even after every earlier message was deleted.
        assert fourth > third > second > first


def test_unacknowledged_messages_come_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.put("x", {"v": 1}, retain=True)
    with Outbox(path) as outbox:
        (message,) = outbox.peek(10)
        assert (message.topic, message.retain, json.loads(message.payload)["v"]) == ("x", True, 1)


def test_full_outbox_refuses_and_counts(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", max_messages=2) as outbox:
        outbox.put("a", {})
        outbox.put("a", {})
        with pytest.raises(OutboxFullError, match="full"):
            outbox.put("a", {})
        with pytest.raises(OutboxFullError, match="2 refused"):
            outbox.put("a", {})
        assert outbox.refused == 2
        assert len(outbox) == 2
        outbox.ack(outbox.peek(1)[0].seq)
        outbox.put("a", {})  # room again
        assert len(outbox) == 2


def test_unwritable_path_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(StateError, match="MQTT outbox"):
        Outbox(blocker / "outbox.db")


def test_a_payload_json_cannot_carry_is_refused_and_not_stored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        with pytest.raises(ValueError, match=r"JSON|Out of range"):
            outbox.put("a", {"v": math.nan})
        with pytest.raises(ValueError, match="JSON"):
            outbox.put("a", {"v": object()})
        assert len(outbox) == 0
        assert outbox.peek(10) == []
        outbox.put("a", {"v": 1})  # the failed transactions left nothing open
        assert len(outbox) == 1
