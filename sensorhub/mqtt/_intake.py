"""Incoming MQTT messages bounded in size while they are read, not after.

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
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Final

import aiomqtt
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

__all__ = ["CutShort", "bound_incoming"]

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
