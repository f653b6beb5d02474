"""A virtual radio: Bumble controllers on one in-memory link, reachable in-process or over HCI.

Everything above the radio is real: each device has its own Bumble controller and host,
and HCI, L2CAP, ATT, GATT and SMP packets are really encoded and decoded. A hub in
another process reaches the radio over HCI-over-TCP (``tcp-server:HOST:PORT``); every
accepted connection gets a fresh controller of its own on the shared link, so hubs can
come and go one after another (scan, then pair, then run) or several at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Final

from bumble import hci, keys
from bumble.controller import Controller
from bumble.device import Device, DeviceConfiguration
from bumble.hci import Address
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, PacketParser

from firmware_protocol._errors import FirmwareProtocolError
from firmware_protocol.virtual.quiet import QuietHost

log = logging.getLogger(__name__)
_CONTROLLER_LOG: Final = logging.getLogger("bumble.controller")
_DATA_PATH: Final = (hci.HCI_AclDataPacket, hci.HCI_Number_Of_Completed_Packets_Event)
"""The packets every notification makes: data, and the controller's note that it went."""


class VirtualController(Controller):
    """Bumble's virtual controller, with LE Create Connection Cancel done as the spec says.

    Bumble's controller acknowledges the cancel but keeps the pending connection, so a
    hub that gave up on an absent sensor would be connected to it whenever it came back
    (and could make no other connection meanwhile). Core Spec Vol 4, Part E, 7.8.13: the
    pending connection ends with an LE Connection Complete event, status 0x02.

    Bumble formats every packet into a string for its debug log, whether that log is on
    or not; on the data path that was about a tenth of what a streaming sensor cost. Data
    packets skip it unless the log is on; everything else goes through Bumble unchanged.
    """

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_AclDataPacket) and not _CONTROLLER_LOG.isEnabledFor(
            logging.DEBUG
        ):
            self.on_hci_acl_data_packet(packet)
        else:
            super().on_hci_packet(packet)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, _DATA_PATH) and not _CONTROLLER_LOG.isEnabledFor(logging.DEBUG):
            if self.host:
                asyncio.get_running_loop().call_soon(self.host.on_packet, bytes(packet))
        else:
            super().send_hci_packet(packet)

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        result = super().on_hci_le_create_connection_cancel_command(command)
        if pending is not None:
            self.pending_le_connection = None
            asyncio.get_running_loop().call_soon(self._report_cancelled, pending)
        return result

    def _report_cancelled(self, pending: hci.HCI_Command) -> None:
        self.send_hci_packet(
            hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,  # type: ignore[attr-defined]
                peer_address=pending.peer_address,  # type: ignore[attr-defined]
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
        )


class VirtualRadio:
    """An in-memory radio shared by virtual sensors and hubs."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self._count = 0

    def new_controller(self, name: str | None = None) -> Controller:
        """Add a controller to the link (no public address: devices use static random ones)."""
        self._count += 1
        return VirtualController(name or f"controller-{self._count}", link=self.link)

    def new_device(self, *, name: str, address: str) -> Device:
        """Return a powered-off device with its own controller and an in-memory bond store."""
        controller = self.new_controller(name)
        config = DeviceConfiguration(name=name, address=Address(address))
        config.irk = secrets.token_bytes(16)
        device = Device(
            name=name,
            address=Address(address),
            config=config,
            host=QuietHost(controller, AsyncPipeSink(controller)),
        )
        device.keystore = keys.MemoryKeyStore()
        return device

    def release(self, controller: Controller) -> None:
        """Take a controller off the link, dropping its links as if it went out of range."""
        for connection in list(controller.le_connections.values()):
            peer = self.link.find_le_controller(connection.peer_address)
            if peer is None:
                continue
            for peer_connection in list(peer.le_connections.values()):
                if peer_connection.peer_address == connection.self_address:
                    # 0x08: connection timeout, what a peer sees when the other side vanishes
                    peer.on_le_disconnected(peer_connection, 0x08)
        with contextlib.suppress(KeyError):
            self.link.remove_controller(controller)

    def serve_hci(self, moniker: str) -> HciServer:
        """Return a server that exposes the radio over HCI to hubs in other processes."""
        return HciServer(self, moniker)


@dataclass
class HciServer:
    """HCI-over-TCP access to a :class:`VirtualRadio`; an async context manager.

    The moniker is Bumble's ``tcp-server:HOST:PORT`` (port 0 picks a free one, see
    ``port`` after entering).
    """

    radio: VirtualRadio
    moniker: str
    host: str = field(init=False)
    port: int = field(init=False)
    clients: int = field(init=False, default=0)
    _server: asyncio.Server | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        scheme, _, rest = self.moniker.partition(":")
        host, _, port = rest.rpartition(":")
        if scheme != "tcp-server" or not host or not port.isdigit():
            raise FirmwareProtocolError(
                f"HCI transport {self.moniker!r} is not supported here; "
                "use tcp-server:HOST:PORT, e.g. tcp-server:127.0.0.1:7001"
            )
        self.host = "0.0.0.0" if host == "_" else host  # noqa: S104 - "_" asks for every interface
        self.port = int(port)

    async def __aenter__(self) -> HciServer:
        try:
            self._server = await asyncio.start_server(self._serve_client, self.host, self.port)
        except OSError as exc:
            raise FirmwareProtocolError(
                f"cannot listen for HCI on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("virtual radio: HCI over TCP on %s:%d", self.host, self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.clients += 1
        peer = writer.get_extra_info("peername")
        controller = self.radio.new_controller(f"hci-client-{self.clients}")
        log.info("virtual radio: hub connected from %s", peer)

        controller.host = _ToSocket(writer)
        parser = PacketParser(controller)
        try:
            while data := await reader.read(65536):
                parser.feed_data(data)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.radio.release(controller)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            log.info("virtual radio: hub from %s left", peer)


class _ToSocket:
    """Packets from a controller to its hub's socket, those of one loop turn in one write.

    Each write is a system call that also wakes the hub; with tens of sensors streaming,
    several notifications often reach the hub's controller in the same turn of the loop
    (measured with 40: 1.6 packets a write).
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending = bytearray()

    def on_packet(self, packet: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending += packet

    def _flush(self) -> None:
        if not self._writer.is_closing():
            self._writer.write(bytes(self._pending))
        self._pending.clear()
