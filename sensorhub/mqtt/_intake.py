"""Incoming MQTT messages: bounded in size while they are read, and judged as they arrive.

paho (under aiomqtt) reads a whole packet into memory before anyone sees it, up to the
256 MB that MQTT allows, and copies it on the way: a size limit checked on the finished
message comes too late (40 commands of 8 MB during a ``pair`` took the hub from 111 to
455 MB, and the C allocator kept most of it). The broker's own limit (mosquitto's
``message_size_limit``) is its operator's choice, not something the hub can count on.

:func:`bound_incoming` makes one client keep at most ``keep`` bytes of any PUBLISH
packet (its topic and properties, and the start of its payload): the rest is read from
the socket a piece at a time and thrown away, and the message is delivered with an empty
:class:`CutShort` payload that says how long the real one was, so the hub can refuse it
by its size. The stream stays in step: the next packet is read as usual, and a QoS 1
message is acknowledged as any other. A message whose topic and properties alone are
longer than ``keep`` is dropped (what paho could decode of them is not to be acted on).

This reaches into paho's reader (``_sock_recv``, ``_in_packet``, ``_protocol``,
``_handle_publish``, ``_handle_on_message``, as in paho 2.1 and 2.2); if a paho release
lacks them, the client is left as it is, with a warning, and only the hub's size check
on the finished message applies.

:func:`take_directly` hands each message to the hub where paho reads it, and
:class:`CommandIntake` decides there and then what becomes of a command: refused (too
long, retained, or no room) or put in one bounded queue for the worker that carries
commands out. Between the socket and that decision nothing waits.

:func:`hold_connection` and :func:`until_broker_closes` end a connection that another
of the same session is to follow at once (a renewal of the will). paho closes its socket
as soon as its DISCONNECT is written; a broker under load may then read the next
connection's CONNECT first, take the session over from a connection it has not finished
reading, send that connection's will and send again every command whose acknowledgement
it had not yet read: a command carried out twice, and a false "offline". Holding a
second descriptor of the socket open until the broker closes its side, which it does
once it has read the DISCONNECT, orders the two connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Final

import aiomqtt
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion, _ConnectionState
from paho.mqtt.packettypes import PacketTypes

from sensorhub.mqtt.commands import MAX_PAYLOAD_BYTES, error_reply, reply_ids

__all__ = ["CommandIntake", "CutShort", "bound_incoming", "take_directly"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES: Final = 65_536
"""The most read from the socket at once: paho asks for a whole packet's length, and
Python allocates that much for every call before it knows how much arrived."""
_PUBLISH: Final = PacketTypes.PUBLISH << 4
_NEEDS: Final = ("_sock_recv", "_in_packet", "_protocol", "_handle_publish", "_handle_on_message")


class CutShort(bytes):
    """The empty payload that stands for one too long to keep; ``size`` is its length, bytes."""

    size: int

    def __new__(cls, size: int) -> CutShort:
        """An empty payload for one of ``size`` bytes."""
        cut = super().__new__(cls, b"")
        cut.size = size
        return cut


class _BoundedReader:
    """Stands in for one paho client's socket reads and message hand-over."""

    def __init__(self, paho: Any, keep: int) -> None:
        self._paho = paho
        self._keep = keep
        self._recv = paho._sock_recv
        self._handle_publish = paho._handle_publish
        self._deliver = paho._handle_on_message
        self._discard = 0
        """Bytes of the packet last cut short still to be read and thrown away."""
        self._cut_length: int | None = None
        """The real remaining length of the PUBLISH being read, when it was cut short."""

    def recv(self, bufsize: int) -> bytes:
        """paho's socket read, at most a chunk at a time, cutting long PUBLISH packets."""
        while self._discard:
            # Raises BlockingIOError when the socket is dry: paho then waits for more, as
            # it would for any packet, and the next read carries on discarding.
            dropped = self._recv(min(self._discard, READ_CHUNK_BYTES))
            if not dropped:
                return b""  # the broker closed the connection
            self._discard -= len(dropped)
        packet = self._paho._in_packet
        if packet["command"] == 0:
            self._cut_length = None  # a new packet begins
        elif (
            packet["have_remaining"]
            and not packet["packet"]
            and packet["command"] & 0xF0 == _PUBLISH
            and packet["to_process"] == packet["remaining_length"] > self._keep
        ):
            # The first read of a long PUBLISH's body: keep its head, drop the rest.
            self._cut_length = packet["remaining_length"]
            self._discard = self._cut_length - self._keep
            packet["remaining_length"] = packet["to_process"] = self._keep
            bufsize = self._keep
        return self._recv(min(bufsize, READ_CHUNK_BYTES))  # type: ignore[no-any-return]

    def handle_publish(self) -> MQTTErrorCode:
        """paho's PUBLISH decoder; a topic cut short is a protocol error, not a crash."""
        try:
            return self._handle_publish()  # type: ignore[no-any-return]
        except struct.error:
            # A topic longer than what was kept (MQTT allows 64 KiB): the packet cannot be
            # read, so the connection goes, as for any broken packet.
            log.warning(
                "MQTT: a %s-byte message whose topic alone exceeds %d bytes; reconnecting",
                self._cut_length,
                self._keep,
            )
            return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def on_message(self, message: MQTTMessage) -> None:
        """Hand a message on; one cut short goes with a :class:`CutShort` payload."""
        if self._cut_length is not None:
            cut, self._cut_length = self._cut_length, None
            kept = self._paho._in_packet["packet"]
            v5 = self._paho._protocol == MQTTProtocolVersion.MQTTv5
            head = _head_length(kept, qos=message.qos, v5=v5)
            if head > len(kept):
                # paho decodes what it has: cut properties (a response topic among them)
                # are not to be acted on. It still acknowledges the message.
                log.warning(
                    "MQTT: dropped a %d-byte message on %s: its topic and properties alone "
                    "exceed %d bytes",
                    cut,
                    message.topic,
                    self._keep,
                )
                return
            message.payload = CutShort(cut - head)
        self._deliver(message)


def _head_length(packet: bytes | bytearray, *, qos: int, v5: bool) -> int:
    """Bytes of a PUBLISH body before its payload: topic, packet id, properties (MQTT 5).

    ``packet`` is the body as far as it was kept; the length is read from it even when
    the head runs past its end (then the result is larger than ``len(packet)``).
    """
    head = 2 + int.from_bytes(packet[:2], "big")
    if qos > 0:
        head += 2
    if v5:
        length, shift = 0, 0
        for byte in packet[head : head + 4]:  # a variable byte integer, at most 4 bytes
            head += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            return len(packet) + 1  # the length itself was cut
        head += length
    return head


def bound_incoming(client: aiomqtt.Client, *, keep: int) -> bool:
    """Make ``client`` keep at most ``keep`` bytes of each incoming PUBLISH; whether it could.

    Call it before the client connects. A message longer than that arrives with a
    :class:`CutShort` payload.
    """
    if keep < 1:
        raise ValueError(f"keep = {keep}: give a number of bytes above 0")
    paho = getattr(client, "_client", None)
    if paho is None or not all(hasattr(paho, name) for name in _NEEDS):
        log.warning("MQTT: this paho-mqtt cannot bound incoming messages; sizes checked after")
        return False
    reader = _BoundedReader(paho, keep)
    paho._sock_recv = reader.recv
    paho._handle_publish = reader.handle_publish
    paho._handle_on_message = reader.on_message
    return True


def take_directly(client: aiomqtt.Client, take: Callable[[MQTTMessage], None]) -> None:
    """Hand each message ``client`` receives to ``take`` as paho reads it, not to a queue.

    aiomqtt's message iterator costs a task and a few turns of the event loop a message,
    while paho reads several messages a turn: under a flood its queue filled, and each
    message it then dropped went unanswered with a warning of its own (1,934 of 3,000
    commands of 20 KB). ``take`` runs on the event loop, inside paho's read; it must
    not block. ``client.messages`` then yields nothing, and still ends with the
    connection.
    """
    paho = client._client  # aiomqtt's paho client, to take messages first-hand

    def on_message(_paho: Any, _userdata: Any, message: MQTTMessage) -> None:
        # Read after the client queued its DISCONNECT: paho's acknowledgement would go
        # after it, that is never. The broker sends such a message again on the next
        # connection of the session (a renewal of the will), so taking it now would
        # carry out a command twice.
        if getattr(paho, "_state", None) != _ConnectionState.MQTT_CS_DISCONNECTING:
            take(message)

    paho.on_message = on_message


def hold_connection(client: aiomqtt.Client) -> socket.socket | None:
    """A second descriptor of ``client``'s connection, to take before it disconnects:
    the connection then stays open until the broker closes it (see
    :func:`until_broker_closes`); ``None`` when the client has no socket."""
    paho_socket = client._client.socket()
    if paho_socket is None:
        return None
    try:
        held = socket.socket(fileno=os.dup(paho_socket.fileno()))
    except OSError:
        return None
    held.setblocking(False)
    return held


async def until_broker_closes(held: socket.socket, timeout: float) -> None:
    """Read ``held`` (from :func:`hold_connection`) until the broker closes the connection,
    for at most ``timeout`` seconds, then close it. What arrives meanwhile is thrown away:
    the broker had not had it acknowledged, so it sends it again to the next connection."""
    loop = asyncio.get_running_loop()
    with held, contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout):
            while await loop.sock_recv(held, READ_CHUNK_BYTES):
                pass


MAX_PENDING_COMMANDS: Final = 32
"""Commands waiting for the worker; one more is refused "busy" at once."""
REFUSALS_LOGGED_EVERY_S: Final = 10.0
"""Each kind of refusal at intake is logged when it first happens, then at most this often."""

Pending = tuple[bytes, str | None, bytes | None]
"""A command waiting: its payload, the MQTT 5 response topic and correlation data."""
Refuse = Callable[[dict[str, Any], str | None, bytes | None], None]
"""Sends a refusal's reply (to the response topic and correlation data, if given)."""


class CommandIntake:
    """Commands as they arrive: refused at once, or queued (bounded) for the worker.

    Overflow policy: a command that finds ``max_pending`` waiting is refused "busy" at
    once, never queued; so are one too long to be a command (by its size, unread) and
    one sent with the retain flag. Each refusal is counted and answered through
    ``refuse``, and logged throttled: the first of its kind, then at most one line every
    :data:`REFUSALS_LOGGED_EVERY_S` with the count so far. ``most_waiting`` is the
    longest the queue has been.
    """

    def __init__(
        self, *, commands_topic: str, refuse: Refuse, max_pending: int = MAX_PENDING_COMMANDS
    ) -> None:
        self.commands_topic = commands_topic
        self._refuse = refuse
        self.max_pending = max_pending
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(max_pending)
        self.counts = {"refused_oversized": 0, "refused_retained": 0, "refused_busy": 0}
        self.most_waiting = 0
        self._logged_at: dict[str, float] = {}

    @property
    def waiting(self) -> int:
        """Commands waiting for the worker now."""
        return self._queue.qsize()

    async def next(self) -> Pending:
        """The command that has waited longest."""
        return await self._queue.get()

    def take(self, message: MQTTMessage) -> None:
        """Queue one message from the command topic, or refuse it at once."""
        payload = message.payload
        if isinstance(payload, bytearray):
            payload = bytes(payload)
        properties = getattr(message, "properties", None)
        reply_to = (
            getattr(properties, "ResponseTopic", None),
            getattr(properties, "CorrelationData", None),
        )
        size = payload.size if isinstance(payload, CutShort) else len(payload)
        if size > MAX_PAYLOAD_BYTES:
            # By its size alone: neither kept waiting nor parsed (not even for its id).
            too_big = f"command is {size} bytes; at most {MAX_PAYLOAD_BYTES}"
            self._refused("oversized", too_big, reply_to=reply_to)
            return
        if not payload:
            # How a user clears a retained message at the broker: nothing to carry out,
            # and nothing wrong to answer.
            return
        if message.retain:
            # The broker keeps a retained command and hands it to every hub that connects,
            # long after it was meant: a stop_session once ended a session started later.
            refusal = (
                "refused: the command was sent with the retain flag, so the broker would "
                "hand it to this hub again on every connection; send commands without "
                "retain, and clear this one by publishing an empty retained message to "
                f"{self.commands_topic}"
            )
            self._refused("retained", refusal, ids=reply_ids(payload), reply_to=reply_to)
            return
        try:
            self._queue.put_nowait((payload, *reply_to))
        except asyncio.QueueFull:
            busy = f"busy: {self.max_pending} commands are waiting; send it again later"
            self._refused("busy", busy, ids=reply_ids(payload), reply_to=reply_to)
            return
        self.most_waiting = max(self.most_waiting, self._queue.qsize())

    def _refused(
        self,
        kind: str,
        why: str,
        *,
        ids: tuple[str | None, str | None] = (None, None),
        reply_to: tuple[str | None, bytes | None],
    ) -> None:
        """Count, log (throttled) and answer one refusal; ``ids`` are the command's id, name."""
        key = f"refused_{kind}"
        self.counts[key] += 1
        now = time.monotonic()
        if now - self._logged_at.get(kind, -math.inf) >= REFUSALS_LOGGED_EVERY_S:
            self._logged_at[kind] = now
            log.warning(
                "MQTT: refused a command: %s (%d %s so far; logged at most every %g s)",
                why,
                self.counts[key],
                kind,
                REFUSALS_LOGGED_EVERY_S,
            )
        self._refuse(error_reply(*ids, why), *reply_to)
