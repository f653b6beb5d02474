"""`sensorhub run` as users run it: its own process, sensors in another, a real mosquitto.

SIGKILL mid-session loses at most the last second of what was recorded; the broker
announces the hub offline (last will); a restart carries on with a new session; SIGINT
ends cleanly.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from sensorhub.store import SessionStore
from tests.mosquitto import Mosquitto
from tests.processes import emulate
from tests.service_helpers import subscriber, validate

pytestmark = pytest.mark.timeout(300)

CONFIG = """
[hub]
name = "gym"

[analysis]
set_gap_s = 10

[athletes.Ada]
exercise = "hip_thrust"
load_kg = 100
"""


async def sensorhub(*args: str, timeout: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sensorhub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(timeout):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def start_hub(log: Path, *args: str) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sensorhub", "run", "--no-ui", *args, stdout=out, stderr=out
        )


async def test_sigkill_mid_session_loses_at_most_the_last_second(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "hub.toml"
    config.write_text(CONFIG)
    truth = tmp_path / "truth.jsonl"
    log = tmp_path / "hub.log"
    async with (
        Mosquitto(tmp_path) as broker,
        emulate("--scenario", "demo", "--seed", "5", "--truth", str(truth)) as (port, _),
        subscriber(broker.port) as sub,
    ):
        ble = f"tcp-client:127.0.0.1:{port}"
        sensors = json.loads(truth.read_text().splitlines()[-1])["sensors"]
        # The pelvis first: its neutral hold must fall in the scenario's opening bridge.
        for sensor in sorted(sensors, key=lambda s: s["body"] != "pelvis"):
            code, out = await sensorhub(
                "pair",
                sensor["address"],
                "--role",
                sensor["body"],
                "--athlete",
                "Ada",
                "--ble",
                ble,
                "--state-dir",
                str(state),
            )
            assert code == 0, out
        hub_args = ("--config", str(config), "--ble", ble, "--broker", broker.url)
        hub = await start_hub(log, *hub_args, "--state-dir", str(state))
        try:
            await sub.wait_for(
                lambda _: len(sub.json_on("/athletes/ada/reps")) >= 4, 120, "four reps"
            )
            await asyncio.sleep(1.5)
            killed_at = time.time()
            hub.send_signal(signal.SIGKILL)
            await hub.wait()
        finally:
            if hub.returncode is None:
                hub.kill()
        # The broker tells everyone the hub is gone (its retained last will).
        await sub.wait_for(
            lambda _: sub.json_on("sensorhub/gym/status")[-1]["state"] == "offline",
            10,
            "the last will",
        )
        published = [m.json() for m in sub.on("/athletes/ada/reps") if m.at < killed_at - 1.0]
        assert len(published) >= 3
        session_id = sub.json_on("sensorhub/gym/events")[0]["session_id"]
        # The will was renewed when the session began: it names the session the crash ended.
        will = sub.json_on("sensorhub/gym/status")[-1]
        assert will["reason"] == "connection_lost"
        assert will["session_id"] == session_id

        store = SessionStore.open_readonly(SessionStore.path_in(state))
        try:
            stored = store.reps(session_id)
            listed = {s["id"]: s for s in store.sessions()}
        finally:
            store.close()
        stored_ends = {r["t_end"] for r in stored}
        missing = [r for r in published if r["t_end"] not in stored_ends]
        assert not missing, (
            f"reps published more than 1 s before the kill are not stored: {missing}"
        )
        assert listed[session_id]["ended"] is None  # interrupted, still listed

        # A restart carries on: a new session, the sensors stream again, SIGINT ends cleanly.
        hub = await start_hub(log, *hub_args, "--state-dir", str(state))
        try:
            await sub.wait_for(
                lambda _: any(
                    e.get("type") == "session" and e["session_id"] != session_id
                    for e in sub.json_on("sensorhub/gym/events")
                ),
                60,
                "a new session after the restart",
            )
            # ... and says, once, which session the crash ended and what it holds.
            cut_off = [
                e
                for e in sub.json_on("sensorhub/gym/events")
                if e.get("type") == "session" and e["event"] == "interrupted"
            ]
            assert [(e["session_id"], e["athletes"]) for e in cut_off] == [(session_id, ["Ada"])]
            assert cut_off[0]["reps"] == listed[session_id]["reps"] >= 3
            assert cut_off[0]["sets"] == listed[session_id]["sets"]
            validate(cut_off[0], "session")
            await sub.wait_for(
                lambda _: (
                    len(sub.on("/athletes/ada/tilt")) > 0
                    and sub.on("/athletes/ada/tilt")[-1].at > killed_at + 1
                ),
                60,
                "live tilt after the restart",
            )
            hub.send_signal(signal.SIGINT)
            async with asyncio.timeout(30):
                code = await hub.wait()
        finally:
            if hub.returncode is None:
                hub.kill()
        assert code == 0, log.read_text()[-3000:]
        await sub.wait_for(
            lambda _: sub.json_on("sensorhub/gym/status")[-1]["state"] == "offline",
            10,
            "the offline status of a clean stop",
        )

    store = SessionStore.open_readonly(SessionStore.path_in(state))
    try:
        sessions = store.sessions()
    finally:
        store.close()
    assert [s["ended"] is not None for s in sessions] == [False, True]


@pytest.mark.parametrize("when", ["running", "starting"])
async def test_sighup_closes_the_session_as_sigterm_does(tmp_path: Path, when: str) -> None:
    # Closing the terminal sends SIGHUP; by default it ended the hub with its session open.
    state = tmp_path / "state"
    log = tmp_path / "hub.log"
    async with Mosquitto(tmp_path) as broker, subscriber(broker.port) as sub:
        hub = await start_hub(
            log, "--ble", "virtual", "--broker", broker.url, "--hub-name", "gym",
            "--state-dir", str(state),
        )  # fmt: skip
        try:
            if when == "starting":  # online on the broker, the rest of the hub not yet up
                await sub.wait_for(
                    lambda _: bool(sub.json_on("sensorhub/gym/status")), 60, "online"
                )
            else:
                await sub.wait_for(
                    lambda _: any(e.get("event") == "started" for e in sub.json_on("/events")),
                    60,
                    "the session's start",
                )
                async with asyncio.timeout(30):
                    while "running" not in log.read_text():  # noqa: ASYNC110 - a log to poll
                        await asyncio.sleep(0.1)
            hub.send_signal(signal.SIGHUP)
            async with asyncio.timeout(30):
                code = await hub.wait()
        finally:
            if hub.returncode is None:
                hub.kill()
                await hub.wait()
        await sub.wait_for(
            lambda _: sub.json_on("sensorhub/gym/status")[-1].get("reason") == "shutdown",
            10,
            "the offline status of a clean stop",
        )
    said = log.read_text()
    assert code == 0, said[-3000:]
    assert "stopping (SIGHUP)" in said
    # No sensor was registered: the hub says how to pair one rather than wait in silence.
    assert f"no sensor is registered in {state}" in said
    assert "sensorhub pair ADDRESS --role bar|pelvis --athlete NAME --ble virtual" in said
    store = SessionStore.open_readonly(SessionStore.path_in(state))
    try:
        sessions = store.sessions()
    finally:
        store.close()
    assert len(sessions) == 1
    assert sessions[0]["ended"] is not None
    assert sessions[0]["interrupted"] is False
