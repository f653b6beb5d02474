"""A broker for the benchmark: mosquitto on a free port when installed, else the embedded one.

Latency to a subscriber is only meaningful through the broker a deployment would use,
so mosquitto is preferred; without it the embedded amqtt broker stands in (about three
times slower) and the result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sensorhub.errors import MqttError
from sensorhub.mqtt import EmbeddedBroker

__all__ = ["BenchBroker", "bench_broker"]

MOSQUITTO_PATHS: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class BenchBroker:
    """Where the broker listens and which one it is."""

    url: str
    port: int
    kind: str
    """``"mosquitto"`` or ``"embedded (amqtt)"``."""


def _mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).is_file()), None)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def bench_broker(
    directory: Path, *, prefer_mosquitto: bool = True
) -> AsyncIterator[BenchBroker]:
    """Run a broker on loopback for as long as the context lasts."""
    binary = _mosquitto() if prefer_mosquitto else None
    if binary is None:
        async with EmbeddedBroker(port=0) as embedded:
            yield BenchBroker(embedded.url, embedded.port, "embedded (amqtt)")
        return
    port = _free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                # As root mosquitto would switch to the 'mosquitto' user and lose our files.
                f"user {getpass.getuser()}",
                "allow_anonymous true",
                "persistence false",
                "log_dest none",
                "max_queued_messages 100000",
            ]
        )
        + "\n"
    )
    process = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        str(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_listening(process, port)
        yield BenchBroker(f"mqtt://127.0.0.1:{port}", port, "mosquitto")
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_listening(process: asyncio.subprocess.Process, port: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if process.returncode is not None:
            raise MqttError(f"mosquitto exited at start (status {process.returncode})")
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.02)
    raise MqttError(f"mosquitto did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:g} s")
