"""`sensorhub emulate`: virtual sensors that hubs in other processes reach over HCI-over-TCP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bumble import keys
from bumble.device import Device
from bumble.hci import Address
from bumble.transport import open_transport

from firmware_protocol import ImuDataFrame, SetConfig, StartStreaming
from firmware_protocol.virtual.central import ReferenceCentral
from tests.processes import emulate


@contextlib.asynccontextmanager
async def hub(port: int, address: str) -> AsyncIterator[ReferenceCentral]:
    async with await open_transport(f"tcp-client:127.0.0.1:{port}") as (source, sink):
        device = Device.with_hci("hub", Address(address), source, sink)
        device.keystore = keys.MemoryKeyStore()
        async with ReferenceCentral(device) as central:
            yield central


async def test_hubs_one_after_another_and_at_once(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    async with emulate("--scenario", "hip_thrust", "--seed", "3", "--truth", str(truth)) as (
        port,
        _process,
    ):
        lines = [json.loads(line) for line in truth.read_text().splitlines()]
        described = next(line for line in lines if line["type"] == "emulator")
        addresses = {sensor["address"] for sensor in described["sensors"]}
        assert {"bar", "pelvis"} <= {sensor["body"] for sensor in described["sensors"]}
        assert any(line["type"] == "rep" for line in lines)

        # First hub: scan, pair, stream over the socket.
        async with hub(port, "C0:DE:00:00:00:01") as central:
            found = await central.scan(1.0)
            assert set(found) == addresses
            address = sorted(found)[0]
            link = await central.connect(address)
            await link.pair()
            await link.enable_commands()
            frames: list[object] = []
            await link.subscribe_data(frames.append)
            async with asyncio.timeout(5):
                assert (await link.command(SetConfig(0, 100, 16, 2000))).ok
                assert (await link.command(StartStreaming(0))).ok
            await asyncio.sleep(1.0)
            samples = sum(f.count for f in frames if isinstance(f, ImuDataFrame))
            assert 70 <= samples <= 120

        # Then two hubs at once: each gets a radio of its own and hears every sensor.
        async with (
            hub(port, "C0:DE:00:00:00:02") as second,
            hub(port, "C0:DE:00:00:00:03") as third,
        ):
            seen = await asyncio.gather(second.scan(1.0), third.scan(1.0))
            assert all(set(found) == addresses for found in seen)


async def test_bad_scenario_is_a_clear_error() -> None:
    code, stderr = await emulate_exits("--scenario", "no_such_exercise")
    assert code == 2
    assert b"no_such_exercise" in stderr
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("moniker", ["usb:0", "tcp-server:nowhere"])
async def test_unsupported_hci_moniker_is_a_clear_error(moniker: str) -> None:
    code, stderr = await emulate_exits("--hci", moniker, "--duration", "1")
    assert code == 2
    assert b"tcp-server:HOST:PORT" in stderr


@pytest.mark.parametrize("duration", ["-5", "nan", "inf"])
async def test_a_duration_that_is_no_time_is_refused_at_once(duration: str) -> None:
    # A negative one was taken as "until interrupted": the emulator ran on for ever.
    code, stderr = await emulate_exits("--hci", "tcp-server:127.0.0.1:0", "--duration", duration)
    assert code == 2
    assert f"argument --duration: '{duration}' is not a number of seconds".encode() in stderr


async def emulate_exits(*args: str) -> tuple[int, bytes]:
    """``sensorhub emulate ARGS`` run to its exit (30 s at most): exit status, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensorhub", "emulate", *args, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr


async def test_a_port_already_taken_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = await emulate_exits("--hci", f"tcp-server:127.0.0.1:{port}")
    assert code == 2
    assert f"--hci: cannot listen for HCI on 127.0.0.1:{port}".encode() in stderr
    assert b"Traceback" not in stderr
