"""The outbox keeps QoS 1 messages on disk, in order, until they are acknowledged."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sensorhub.errors import StateError
from sensorhub.mqtt import Outbox, OutboxFullError

ROOT = Path(__file__).resolve().parents[1]


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


OUTBOX_DISK_FULL_PROBE = """
import json, resource, signal, sys
from pathlib import Path
from sensorhub.mqtt import Outbox

path = Path(sys.argv[1])
outbox = Outbox(path, max_in_memory=50)
first = [outbox.put("t", {"i": i}) for i in range(5)]
# From here no file may grow: the disk is full.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
i = 5
while outbox.problem is None or outbox.dropped < 10:
    outbox.put("t", {"i": i})
    i += 1
peeked = outbox.peek(1000)
outbox.ack(peeked[2].seq)  # delivered: the disk cannot record it, memory does
after_ack = outbox.peek(1000)
print(json.dumps({
    "problem": outbox.problem, "put": i, "in_memory": outbox.in_memory,
    "dropped": outbox.dropped, "len": len(outbox), "retry_while_full": outbox.retry(),
    "peeked": [json.loads(m.payload)["i"] for m in peeked],
    "seqs": [m.seq for m in peeked], "after_ack": [m.seq for m in after_ack],
}))
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
print(json.dumps({"retried": outbox.retry(), "problem": outbox.problem}))
outbox.close()
"""


def test_a_full_disk_keeps_messages_in_bounded_memory_and_on_disk_once_it_has_space(
    tmp_path: Path,
) -> None:
    """The disk refuses by a file-size limit (RLIMIT_FSIZE), in a process of its own."""
    path = tmp_path / "outbox.db"
    probe = subprocess.run(
        [sys.executable, "-c", OUTBOX_DISK_FULL_PROBE, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    full, back = (json.loads(line) for line in probe.stdout.splitlines())
    assert "may be full" in full["problem"], probe.stderr
    # Past the bound of 50 the oldest in memory went, counted; seq only grows.
    assert full["in_memory"] == 50
    assert full["dropped"] > 0
    assert full["seqs"] == sorted(set(full["seqs"]))
    kept = full["peeked"]
    assert kept[-50:] == list(range(full["put"] - 50, full["put"]))
    assert full["after_ack"] == full["seqs"][3:]  # delivered, not sent again
    assert full["len"] == len(full["seqs"]) - 3
    assert full["retry_while_full"] is False
    assert back == {"retried": True, "problem": None}
    assert probe.stderr.count("the disk may be full") == 1  # said once, not per message
    with Outbox(path) as outbox:  # what was undelivered survived, on disk, in order
        assert [m.seq for m in outbox.peek(1000)] == full["after_ack"]
