"""The control point from the hub's side: commands out, responses matched by token."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable

from bleak import BleakClient

from firmware_protocol import Command, FirmwareProtocolError, Response, Status
from firmware_protocol import gatt as uuids
from sensorhub.errors import BluetoothError, SensorCommandError


class ControlPoint:
    """Send commands to one connected sensor and await their responses.

    Responses arrive as indications; each is matched to its command by the token,
    so a stale or stray response never answers the wrong command.
    """

    def __init__(
        self, client: BleakClient, address: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.address = address
        self._clock = clock
        self._tokens = itertools.cycle(range(256))
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self.last_received_at = clock()
        """Hub time the latest response arrived (TIME_SYNC uses it)."""
        self.malformed = 0

    async def start(self) -> None:
        """Subscribe to the indications that carry responses."""
        await self.client.start_notify(uuids.CONTROL_POINT_UUID, self._on_indication)

    def _on_indication(self, _characteristic: object, data: bytearray) -> None:
        received = self._clock()
        try:
            response = Response.decode(bytes(data))
        except FirmwareProtocolError:
            self.malformed += 1
            return
        future = self._pending.pop(response.token, None)
        if future is not None and not future.done():
            self.last_received_at = received
            future.set_result(response)

    def cancel_all(self) -> None:
        """Fail every command still waiting (the link went down)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    async def send(self, command: Command, *, timeout: float = 3.0, check: bool = True) -> Response:
        """Send ``command`` (with a fresh token) and return its response.

        With ``check``, a status other than OK raises SensorCommandError.
        """
        token = next(self._tokens)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        name = type(command).__name__
        try:
            async with asyncio.timeout(timeout):
                data = bytes(dataclasses.replace(command, token=token))
                await self.client.write_gatt_char(uuids.CONTROL_POINT_UUID, data, response=True)
                response = await future
        except TimeoutError:
            raise BluetoothError(
                f"{self.address} did not answer {name} within {timeout:g} s"
            ) from None
        finally:
            self._pending.pop(token, None)
        if check and response.status != Status.OK:
            status = response.status
            label = status.name if isinstance(status, Status) else f"0x{status:02x}"
            raise SensorCommandError(f"{self.address} refused {name}: {label}")
        return response
