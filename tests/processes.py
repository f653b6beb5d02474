"""Helpers for tests that run sensorhub commands in processes of their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def emulate(
    *args: str, port: int = 0
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    """``sensorhub emulate`` in a process of its own, listening on ``port`` (0: a free one)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sensorhub",
        "emulate",
        "--hci",
        f"tcp-server:127.0.0.1:{port}",
        *args,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode()
                assert line, "emulator exited before it listened"
                if match := re.search(r"tcp-client:127\.0\.0\.1:(\d+)", line):
                    break
        yield int(match.group(1)), process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                await process.wait()
