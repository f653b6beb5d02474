"""Losing the radio under `sensorhub run`: the hub says so, and comes back by itself.

The virtual sensors, and the controller the hub reaches over HCI-over-TCP, run in an
emulator process of their own; the hub is `sensorhub run` in another, publishing to a
real mosquitto. Killing the emulator drops the hub's HCI transport (a dongle pulled
out); SIGSTOP stalls the controller with the socket still open (a wedged dongle), which
nothing in Bumble notices by itself. Either way the hub's status must say the radio is
lost, the sensors' status must stop saying streaming within the silence watchdog, and
once the emulator is back the hub must reopen the transport by itself and stream again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_protocol.virtual.radio import VirtualRadio
from sensorhub.ble.radio import Radio, RadioState
from sensorhub.errors import RadioLostError
from sensorhub.mqtt.topics import sensor_id
from tests.mosquitto import Mosquitto, free_port
from tests.processes import emulate
from tests.service_helpers import Subscriber, subscriber, validate
from tests.test_service_process import sensorhub, start_hub

pytestmark = pytest.mark.timeout(120)

RATE_HZ = 200
"""The rate the hub asks of an IMU by default (samples/s)."""
WATCHDOG_S = 3.0
"""A link's silence watchdog (``sensorhub.ble.link.SILENCE_TIMEOUT_S``)."""
NOTICE_SLACK_S = 1.5
"""The watchdog looks once a second; then the status crosses the broker."""


@dataclass
class Rack:
    """Two athletes' bar sensors in an emulator on ``port``, streaming to a running hub."""

    sub: Subscriber
    port: int
    emulator_args: tuple[str, ...]
    addresses: list[str]
    log: Path

    def hub_status(self) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = self.sub.json_on("sensorhub/gym/status")
        return statuses[-1] if statuses else {}

    def sensor(self, address: str) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = self.sub.json_on(f"/sensors/{sensor_id(address)}/status")
        return statuses[-1] if statuses else {}

    def all_streaming(self, more_than: dict[str, int] | None = None) -> bool:
        """Every sensor streaming, with more samples received than ``more_than`` says."""
        for address in self.addresses:
            status = self.sensor(address)
            floor = (more_than or {}).get(address, 0)
            if not (status.get("online") and status.get("samples_received", 0) > floor):
                return False
        return True

    def none_streaming(self) -> bool:
        return all(self.sensor(a).get("online") is False for a in self.addresses)

    def received(self) -> dict[str, int]:
        return {a: int(self.sensor(a)["samples_received"]) for a in self.addresses}

    async def wait_radio(self, state: str, timeout: float) -> dict[str, Any]:
        await self.sub.wait_for(
            lambda _: self.hub_status().get("radio") == state, timeout, f"radio {state}"
        )
        status = self.hub_status()
        validate(status, "hub_status")
        assert status["state"] == "online"  # the hub is up; only its radio is not
        return status

    def radio_lines(self) -> list[str]:
        """What the hub said about its radio (from the watch, not the links)."""
        return [line for line in self.log.read_text().splitlines() if "radio tcp-client" in line]


def told_in_moderation(said: list[str]) -> None:
    """The back-off is told, not every attempt of it: attempts 1, 2, 4, 8 … of each loss.

    Counted per loss, so that a loaded machine on which a probe also times out (one more
    loss and return) does not read as a flood.
    """
    losses = [line for line in said if " lost: " in line]
    assert losses, said
    assert len([line for line in said if "back after" in line]) <= len(losses), said
    attempts = [int(m.group(1)) for line in said if (m := re.search(r"attempt (\d+):", line))]
    assert all(a & (a - 1) == 0 for a in attempts), said
    assert len(attempts) <= 5 * len(losses), said  # attempts 1 … 16 at the most, per loss
    assert len(said) - len(attempts) <= 2 * len(losses), said  # a loss, and its return


@contextlib.asynccontextmanager
async def rack(tmp_path: Path) -> AsyncIterator[tuple[Rack, asyncio.subprocess.Process]]:
    """Pair both bar sensors, start the hub, and wait until both stream."""
    state = tmp_path / "state"
    truth = tmp_path / "truth.jsonl"
    emulator_args = ("--athletes", "2", "--seed", "7", "--bonds", str(tmp_path / "flash.json"))
    log = tmp_path / "hub.log"
    async with (
        Mosquitto(tmp_path) as broker,
        subscriber(broker.port) as sub,
        emulate(*emulator_args, "--truth", str(truth), port=free_port()) as (port, emulator),
    ):
        ble = f"tcp-client:127.0.0.1:{port}"
        sensors = json.loads(truth.read_text().splitlines()[-1])["sensors"]
        bars = [s for s in sensors if s["body"] == "bar" and s["kind"] == "imu"]
        assert len(bars) == 2
        for sensor in bars:
            code, out = await sensorhub(
                "pair", sensor["address"], "--role", "bar", "--athlete",
                f"A{sensor['athlete']}", "--ble", ble, "--state-dir", str(state),
            )  # fmt: skip
            assert code == 0, out
        hub = await start_hub(
            log, "--ble", ble, "--broker", broker.url, "--hub-name", "gym",
            "--no-session", "--state-dir", str(state),
        )  # fmt: skip
        try:
            found = Rack(sub, port, emulator_args, [s["address"] for s in bars], log)
            await sub.wait_for(lambda _: found.all_streaming(), 30, "both sensors streaming")
            assert (await found.wait_radio("ready", 5))["radio_error"] is None
            yield found, emulator
        finally:
            if hub.returncode is None:
                hub.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(20):
                        await hub.wait()
            if hub.returncode is None:
                hub.kill()
                await hub.wait()


async def test_a_restarted_emulator_is_reached_again_by_itself(tmp_path: Path) -> None:
    async with rack(tmp_path) as (hub, emulator):
        before = hub.received()
        killed_at = time.monotonic()
        emulator.kill()  # the transport drops: a dongle pulled out
        await emulator.wait()
        lost = await hub.wait_radio("lost", WATCHDOG_S + NOTICE_SLACK_S)
        assert "transport closed" in lost["radio_error"]
        await hub.sub.wait_for(
            lambda _: hub.none_streaming(), WATCHDOG_S + NOTICE_SLACK_S, "sensors not streaming"
        )
        assert time.monotonic() - killed_at < WATCHDOG_S + NOTICE_SLACK_S
        await hub.sub.wait_for(
            lambda _: all(
                "radio is lost" in str(hub.sensor(a)["last_error"]) for a in hub.addresses
            ),
            2,
            "the sensors' status to say why",
        )
        for address in hub.addresses:
            validate(hub.sensor(address), "sensor_status")
        await asyncio.sleep(4.0)  # a few failed attempts to reopen it

        # The same sensors (their bonds kept, as in flash) come back on the same port.
        async with emulate(*hub.emulator_args, port=hub.port):
            await hub.wait_radio("ready", 20)
            await hub.sub.wait_for(
                lambda _: hub.all_streaming(more_than=before), 30, "streaming again"
            )
            for address in hub.addresses:
                status = hub.sensor(address)
                validate(status, "sensor_status")
                assert status["reconnects"] >= 1
                assert status["samples_received"] > before[address]  # counters kept
    said = hub.radio_lines()
    assert any("lost: the HCI transport closed" in line for line in said), said
    assert any("back after" in line for line in said), said
    told_in_moderation(said)


async def test_a_stalled_controller_is_noticed_and_the_samples_lost_counted(
    tmp_path: Path,
) -> None:
    async with rack(tmp_path) as (hub, emulator):
        lost_before = {a: int(hub.sensor(a)["samples_lost"]) for a in hub.addresses}
        emulator.send_signal(signal.SIGSTOP)  # the socket stays open; nothing answers
        stopped_at = time.monotonic()
        try:
            await hub.sub.wait_for(
                lambda _: hub.none_streaming(),
                WATCHDOG_S + NOTICE_SLACK_S,
                "sensors not streaming within the silence watchdog",
            )
            lost = await hub.wait_radio("lost", WATCHDOG_S + NOTICE_SLACK_S)
            assert "did not answer" in lost["radio_error"]
            await asyncio.sleep(max(0.0, 8.0 - (time.monotonic() - stopped_at)))
        finally:
            emulator.send_signal(signal.SIGCONT)
        stalled_s = time.monotonic() - stopped_at
        await hub.wait_radio("ready", 25)
        received = hub.received()
        await hub.sub.wait_for(
            lambda _: hub.all_streaming(more_than=received), 30, "streaming again"
        )
        back_s = time.monotonic() - stopped_at
        for address in hub.addresses:
            status = hub.sensor(address)
            validate(status, "sensor_status")
            # The sensor sampled on through the stall and the reconnect; the hub resumed
            # its stream and counted exactly that stretch from the frames' numbers.
            lost_samples = status["samples_lost"] - lost_before[address]
            assert 0.9 * stalled_s * RATE_HZ < lost_samples < (back_s + 1.0) * RATE_HZ, status
    said = hub.radio_lines()
    assert any("did not answer" in line for line in said), said
    told_in_moderation(said)


async def test_work_on_a_lost_radio_is_ended_and_the_next_waits_for_its_return(
    tmp_path: Path,
) -> None:
    async with Radio.on_virtual_radio(VirtualRadio(), state_dir=tmp_path) as radio:
        heard: list[RadioState] = []
        radio.add_listener(lambda changed: heard.append(changed.state))
        started = asyncio.Event()

        async def stuck() -> None:
            started.set()
            try:
                await asyncio.sleep(3600)  # a scan that hears nothing
            finally:
                await asyncio.sleep(3600)  # a disconnect that waits on the dead radio too

        attempt = asyncio.create_task(radio.while_ready(stuck, name="stuck"))
        await started.wait()
        radio._set_lost("unplugged")  # what the watch does
        with pytest.raises(RadioLostError, match="unplugged"):
            async with asyncio.timeout(2):
                await attempt
        following = asyncio.create_task(
            radio.while_ready(lambda: asyncio.sleep(0, "ran"), name="next")
        )
        await asyncio.sleep(0.1)
        assert not following.done()  # nothing is tried on a lost radio
        radio._set_ready()
        assert await following == "ran"
        assert heard == [RadioState.LOST, RadioState.READY]
