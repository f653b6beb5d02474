"""The MQTT publisher: records in, a stable topic tree out, whether the broker is there or not.

The service calls the publisher's plain methods from the event loop; they never wait.
What happens to a record depends on what it is worth:

* reps, sets, alerts and session events go into the on-disk :class:`Outbox` first and
  are published with QoS 1 in ``seq`` order once the broker is there, each deleted only
  after its PUBACK: a broker away for hours, or a hub restart, loses none of them (a
  disk that refuses them leaves them in the outbox's memory, published all the same,
  and on disk once it has space);
* retained state (hub status, sensor status, athlete state, Home Assistant configs)
  keeps only its latest value per topic and is sent again on every connect;
* live tilt and velocity keep only their latest value per topic and go out with QoS 0 at
  most ``live_rate_hz`` times a second on average; stale values are dropped, and counted.

aiomqtt does not reconnect by itself, so one background task keeps a connection up,
retrying with exponential backoff and jitter; while the broker cannot be reached its
port is tried every second, and a broker back from a restart is connected to at once.
The broker's last will for us is the retained ``offline`` hub status, naming the session
that was running: a will is fixed when the connection opens, so when a session starts or
ends the publisher renews it by closing the connection cleanly (no will sent) and opening
another at once. The broker keeps the hub's subscriptions across that moment (a session
of its own, :data:`BROKER_SESSION_EXPIRY_S`), so no command sent meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY, MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sensorhub.errors import CommandError, ConfigError, SensorhubError
from sensorhub.mqtt._intake import (
    CommandIntake,
    bound_incoming,
    hold_connection,
    take_directly,
    until_broker_closes,
)
from sensorhub.mqtt.commands import Command, error_reply, ok_reply, parse_command, reply_ids
from sensorhub.mqtt.discovery import MIGRATE_DISCOVERY, Discovery, unique_ids
from sensorhub.mqtt.outbox import DEFAULT_MAX_MESSAGES, Outbox
from sensorhub.mqtt.settings import BrokerSettings
from sensorhub.mqtt.topics import TopicTree
from sensorhub.records import Record, iso

__all__ = ["CommandHandler", "MqttPublisher"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], Awaitable[dict[str, Any]]]

OUTBOX_WINDOW: Final = 64
"""QoS 1 messages in flight at once while draining: a backlog drains far faster than one by one."""
PUBLISH_TIMEOUT_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 10.0
RECONNECT_DELAY_S: Final = (0.5, 30.0)
"""Seconds between connection attempts: the first wait, doubled after each failure up to
the second; each wait with ±25 % jitter."""
PROBE_EVERY_S: Final = 1.0
"""While the broker is unreachable, its port is tried this often between attempts."""
BROKER_SESSION_EXPIRY_S: Final = 60
"""How long the broker keeps the hub's subscriptions, and queues the commands sent to it,
once a connection ends (MQTT 5): across a renewal of the will nothing is lost, and a hub
away for longer is not sent a backlog of stale commands. MQTT 3.1.1 has no such bound:
a hub stopped cleanly drops its session itself (``MqttPublisher._drop_broker_session``),
one that crashed leaves it to the broker's ``persistent_client_expiration``."""
RENEW_DRAIN_S: Final = 2.0
"""Before closing a connection to renew the will, what is in flight gets this long to go."""
RENEW_CLOSE_TIMEOUT_S: Final = 2.0
"""How long a renewal waits for the broker to close the connection it ended."""
OFFLINE_AT_LEAST_S: Final = 1.0
"""The least time a clean stop gives its ``offline`` status, however long the drain took
(the publisher's exit waits two seconds past the shutdown timeout for both)."""
DROP_SESSION_TIMEOUT_S: Final = 1.0
"""A stopping hub's clean connection that drops its broker session (MQTT 3.1.1) gets this long."""
OUTBOX_RETRY_S: Final = 1.0
"""While the outbox's disk refuses, moving what waits in memory to disk is tried this often."""
STATE_MIN_INTERVAL_S: Final = 1.0
"""Athlete state changed only by tilt goes out at most once a second (dashboards, HA's recorder)."""
SENSOR_STATUS_EVERY_S: Final = 4.0
"""A sensor status with only counters changed is sent at most this often."""
LIVE_STALE_S: Final = 2.0
"""A live value older than this when the broker comes back is no longer live: dropped."""
LIVE_BURST: Final = 10
"""Live messages handed to the client at once."""
MAX_INCOMING_MESSAGE_BYTES: Final = 65_536
"""The most of any incoming message the client keeps (topic, properties, payload): a
command's 16 KiB and room for its headers; a longer one is read and thrown away as it
arrives, and refused by the size it had."""
MAX_PENDING_REPLIES: Final = 256
"""Replies waiting for the broker; past this the oldest is dropped, and counted."""
REFUSAL_REPLIES_AT_MOST: Final = MAX_PENDING_REPLIES // 2
"""Replies to commands refused as they arrive take at most half the room: a flood of
refusals gets no more answers then, and never pushes out a reply saying what a command
that was carried out did."""
_MEANINGFUL_SENSOR_FIELDS: Final = (
    "role",
    "athlete",
    "state",
    "online",
    "battery_pct",
    "last_error",
    "reconnects",
)
_AUTH_CODES: Final = {4, 5, 134, 135}
"""CONNACK codes for a bad user name, password or authorisation (3.1.1 and 5)."""


class MqttPublisher:
    """Publishes sensorhub's records over MQTT; an async context manager.

    ``__aenter__`` returns at once: the service runs whether or not the broker is
    reachable. On a clean ``__aexit__`` the outbox is given ``shutdown_timeout_s`` to
    drain, then the retained hub status says ``offline`` and the client disconnects.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        topics: TopicTree,
        outbox_path: Path,
        live_rate_hz: float = 10.0,
        discovery_prefix: str | None = "homeassistant",
        on_command: CommandHandler | None = None,
        hub_info: dict[str, Any] | None = None,
        reconnect_delay_s: tuple[float, float] = RECONNECT_DELAY_S,
        shutdown_timeout_s: float = 2.0,
        max_outbox_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        if not (math.isfinite(live_rate_hz) and live_rate_hz > 0):
            raise ConfigError(f"live_rate_hz = {live_rate_hz}: give a rate above 0, e.g. 10")
        low, high = reconnect_delay_s
        if not 0 < low <= high:
            raise ConfigError(
                f"reconnect_delay_s = {reconnect_delay_s}: use (min, max), 0 < min <= max"
            )
        if discovery_prefix is not None:
            TopicTree(discovery_prefix, "x")  # the same rules as any topic prefix
        self.settings = settings
        self.topics = topics
        self.outbox_path = outbox_path
        self._interval_s = 1.0 / live_rate_hz
        self._on_command = on_command
        self._hub_info: dict[str, Any] = dict(hub_info or {})
        self._backoff = (low, high)
        self._shutdown_timeout_s = shutdown_timeout_s
        self._max_outbox = max_outbox_messages
        self._tls = settings.ssl_context()
        self._client_id = settings.client_id or f"sensorhub-{topics.hub}-{secrets.token_hex(4)}"
        version = self._hub_info.get("version")
        self._discovery = (
            Discovery(topics, discovery_prefix, str(version) if version else None)
            if discovery_prefix is not None
            else None
        )

        self._outbox: Outbox | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connected = False
        # Outbox: woken when a message is put.
        self._outbox_ready = asyncio.Event()
        # Retained: latest payload per topic (b"" clears), what still needs sending.
        self._retained: dict[str, bytes] = {}
        self._dirty: dict[str, bool] = {}  # topic -> urgent (else rate-limited)
        self._retained_sent_at: dict[str, float] = {}
        self._retained_ready = asyncio.Event()
        self._discovery_topics: dict[str, set[str]] = {}  # device config -> its unique_ids
        # Old per-entity configs found on the broker: topic -> unique_id ("" to clear only).
        self._legacy: dict[str, str] = {}
        self._legacy_ready = asyncio.Event()
        self._athletes: dict[str, Record | None] = {}  # seen, with the state last published
        self._sensors: dict[str, tuple[Record, float]] = {}  # address -> (last sent, when)
        # Live: latest (payload, monotonic time) per topic.
        self._live: dict[str, tuple[bytes, float]] = {}
        self._live_next: dict[str, float] = {}
        self._live_ready = asyncio.Event()
        # Commands in, replies out.
        self._intake = CommandIntake(commands_topic=topics.commands, refuse=self._reply_refusal)
        self._replies: deque[tuple[bytes, str | None, bytes | None]] = deque()
        self._replies_ready = asyncio.Event()
        self._counts = {
            "published": 0,
            "reconnects": 0,
            "dropped_live": 0,
            "refused": 0,
            "commands": 0,
            "dropped_replies": 0,
            "unanswered_refusals": 0,
        }
        self._last_error: str | None = None
        self._ever_connected = False
        self._reset_backoff = False
        # The session the current connection's last will names; set when it should name
        # another (a session started or ended): the connection is then renewed.
        self._will_session: Any = None
        self._will_stale = asyncio.Event()
        # Renewing: closing a connection to open the next at once. Its first closes
        # cleanly, so its will is not sent: until the next connection is up (will
        # withheld) nothing would tell the broker that the hub went away.
        self._renewing = self._will_withheld = False
        self._broker_session = False  # whether the broker may hold one of ours from before
        self._progress = asyncio.Event()
        """Set whenever the outbox or the replies shrink (a clean shutdown waits on it)."""

    # Lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> MqttPublisher:
        self._outbox = Outbox(self.outbox_path, max_messages=self._max_outbox)
        if len(self._outbox):
            log.info(
                "MQTT outbox holds %d messages from before; sending them first", len(self._outbox)
            )
            self._outbox_ready.set()
        self._set_hub_status()
        if self._discovery is not None:
            self._add_discovery(*self._discovery.hub())
        self._runner = asyncio.create_task(self._run(), name="mqtt publisher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._progress.set()  # a drain waiting for a renewal hears of the stop at once
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                # The connection task drains and says offline within shutdown_timeout_s;
                # past a little more than that the broker is not answering: cancel.
                await asyncio.wait({runner}, timeout=self._shutdown_timeout_s + 2.0)
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
        finally:
            if self._outbox is not None:
                if len(self._outbox):
                    log.warning(
                        "MQTT: %d messages not yet delivered stay in %s for the next start",
                        len(self._outbox),
                        self.outbox_path,
                    )
                self._outbox.close()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._keep_connected(), name="mqtt connection")
            worker = tasks.create_task(self._command_worker(), name="mqtt commands")
            retry = tasks.create_task(self._retry_outbox(), name="mqtt outbox retry")
            await self._stopping.wait()
            worker.cancel()
            retry.cancel()

    async def _retry_outbox(self) -> None:
        """Give messages the outbox's disk refused a place on disk once it has space."""
        while True:
            await asyncio.sleep(OUTBOX_RETRY_S)
            if self._outbox is not None:
                self._outbox.retry()

    # What the service calls -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a broker connection is up now."""
        return self._connected

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for status views: published, queued (in the outbox), reconnects, drops.

        ``commands_waiting`` is how many commands wait now, ``most_commands_waiting`` the
        most that ever did; ``refused_*`` count commands refused as they arrived;
        ``outbox_problem`` says why ``queued_in_memory`` messages wait in memory (the
        disk refuses them), ``dropped_from_memory`` how many were let go from there.
        """
        outbox = self._outbox
        return {
            "connected": self._connected,
            **self._counts,
            **self._intake.counts,
            "commands_waiting": self._intake.waiting,
            "most_commands_waiting": self._intake.most_waiting,
            "queued": len(outbox) if outbox is not None else 0,
            "queued_in_memory": outbox.in_memory if outbox is not None else 0,
            "dropped_from_memory": outbox.dropped if outbox is not None else 0,
            "outbox_problem": outbox.problem if outbox is not None else None,
            "last_error": self._last_error,
        }

    def publish_record(self, record: Record) -> None:
        """Publish one analysis or session record; routed by ``record["type"]``, never waits.

        An ``athlete_state`` record (made by the pipeline, see
        :class:`~sensorhub.records.AthleteStates`) is kept retained on the athlete's
        ``state`` topic; the publisher derives nothing itself.
        """
        kind = record.get("type")
        athlete = record.get("athlete")
        if kind in {"tilt", "velocity", "rep", "set"} and not isinstance(athlete, str):
            log.warning("MQTT: a %s record without an athlete is not published", kind)
            return
        if isinstance(athlete, str) and athlete:
            self._see_athlete(athlete)
        if kind in {"tilt", "velocity"}:
            assert isinstance(athlete, str)
            self._put_live(self.topics.athlete(athlete, kind), record)
        elif kind == "rep":
            assert isinstance(athlete, str)
            self._put(self.topics.athlete(athlete, "reps"), record)
            self._put(self.topics.events, record)
        elif kind == "set":
            assert isinstance(athlete, str)
            self._put(self.topics.athlete(athlete, "sets"), record)
            self._put(self.topics.athlete(athlete, "last_set"), record, retain=True)
            self._put(self.topics.events, record)
        elif kind == "alert":
            if isinstance(athlete, str) and athlete:
                self._put(self.topics.athlete(athlete, "alerts"), record)
            self._put(self.topics.events, record)
        elif kind == "session":
            self._put(self.topics.events, record)
        elif kind == "athlete_state" and isinstance(athlete, str) and athlete:
            self._put_state(athlete, record)
        else:
            log.warning("MQTT: record type %r is not published", kind)

    def publish_sensor_status(self, record: Record) -> None:
        """Publish a sensor's retained status, when it changed meaningfully or every few seconds."""
        address = record.get("address")
        if not isinstance(address, str) or not address:
            log.warning("MQTT: a sensor status without an address is not published")
            return
        now = time.monotonic()
        previous = self._sensors.get(address)
        if previous is not None:
            last, at = previous
            changed = any(last.get(k) != record.get(k) for k in _MEANINGFUL_SENSOR_FIELDS)
            if not changed and now - at < SENSOR_STATUS_EVERY_S:
                return
        elif self._discovery is not None:
            self._add_discovery(
                *self._discovery.sensor(
                    address,
                    role=str(record.get("role") or ""),
                    athlete=str(record.get("athlete") or ""),
                )
            )
        self._sensors[address] = (dict(record), now)
        self._set_retained(self.topics.sensor_status(address), _json(record), urgent=True)

    def forget_sensor(self, address: str) -> None:
        """Clear a forgotten sensor's retained status (and its Home Assistant entities)."""
        self._sensors.pop(address, None)
        self._set_retained(self.topics.sensor_status(address), b"", urgent=True)
        if self._discovery is not None:
            topic = self._discovery.sensor_topic(address)
            self._discovery_topics.pop(topic, None)
            self._set_retained(topic, b"", urgent=True)
            # Its entities from before device discovery go too, not back to the old form.
            prefix = self._discovery.sensor_unique_id_prefix(address)
            for old in [t for t, uid in self._legacy.items() if uid.startswith(prefix)]:
                self._legacy[old] = ""
            self._legacy_ready.set()

    def set_hub_info(self, **fields: Any) -> None:
        """Add to (or change) the hub status, e.g. ``session_id``; republished retained."""
        self._hub_info.update(fields)
        self._set_hub_status()
        if "session_id" in fields and fields["session_id"] != self._will_session:
            self._will_stale.set()

    # Turning records into messages ------------------------------------------------------

    def _put(self, topic: str, record: Record, *, retain: bool = False) -> None:
        assert self._outbox is not None, "use MqttPublisher inside 'async with'"
        try:
            self._outbox.put(topic, record, qos=1, retain=retain)
        except SensorhubError as exc:
            self._counts["refused"] += 1
            # Said loudly, but not once per record when the disk is full for hours.
            if self._counts["refused"] in {1, 10, 100} or self._counts["refused"] % 1000 == 0:
                log.error("MQTT: %s (%d refused)", exc, self._counts["refused"])
            return
        except ValueError as exc:
            self._counts["refused"] += 1
            log.error("MQTT: %s record not published: %s", record.get("type"), exc)
            return
        self._outbox_ready.set()

    def _put_live(self, topic: str, record: Record) -> None:
        if topic in self._live:
            self._counts["dropped_live"] += 1  # a newer value wins; the older one was never sent
        self._live[topic] = (_json(record), time.monotonic())
        self._live_ready.set()

    def _see_athlete(self, athlete: str) -> None:
        if athlete in self._athletes:
            return
        self._athletes[athlete] = None
        if self._discovery is not None:
            self._add_discovery(*self._discovery.athlete(athlete))

    def _put_state(self, athlete: str, state: Record) -> None:
        """An athlete's state, retained: at once when the set or rep in it changed, with
        the next retained batch when only the tilt did (that changes ten times a second)."""
        last = self._athletes.get(athlete)
        urgent = last is None or any(
            last.get(key) != value
            for key, value in state.items()
            if key not in {"tilt_deg", "t", "ts"}
        )
        self._athletes[athlete] = state
        self._set_retained(self.topics.athlete(athlete, "state"), _json(state), urgent=urgent)

    def _set_hub_status(self) -> None:
        t = round(time.time(), 3)
        status = {**self._hub_info, "state": "online", "hub": self.topics.hub, "ts": iso(t), "t": t}
        self._set_retained(self.topics.hub_status, _json(status), urgent=True)

    def _offline_status(self, reason: str) -> bytes:
        status = {**self._hub_info, "state": "offline", "hub": self.topics.hub, "reason": reason}
        if reason == "shutdown":
            t = round(time.time(), 3)
            status |= {"ts": iso(t), "t": t}
        return _json(status)

    def _add_discovery(self, topic: str, payload: dict[str, Any]) -> None:
        self._discovery_topics[topic] = unique_ids(payload)
        self._set_retained(topic, _json(payload), urgent=True)
        self._legacy_ready.set()  # it may be what an old per-entity config waits for

    def _set_retained(self, topic: str, payload: bytes, *, urgent: bool) -> None:
        self._retained[topic] = payload
        self._dirty[topic] = self._dirty.get(topic, False) or urgent
        self._retained_ready.set()

    # The connection -----------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        """Connect, serve, and after any failure wait (backoff with jitter) and connect again."""
        delay = self._backoff[0]
        while not self._stopping.is_set():
            failure: str | None = None
            unreachable = False
            try:
                await self._connection()
            except* aiomqtt.MqttError as group:
                failure = self._describe(group.exceptions[0])
                # Anything but the broker answering with a refusal (which it would give
                # again at once) may be a broker that is away.
                unreachable = not isinstance(group.exceptions[0], aiomqtt.MqttCodeError)
            except* SensorhubError as group:
                failure = str(group.exceptions[0])
            except* Exception as group:  # a bug must not end publishing for good
                log.error("MQTT: unexpected error", exc_info=group.exceptions[0])
                failure = f"unexpected error: {group.exceptions[0]!r}"
            self._connected = False
            if self._renewing:
                # Closed on purpose (even if the close itself failed), or the next
                # connection did not open: the broker may hold no will for the hub.
                self._will_withheld = True
                if failure is None:
                    continue  # open the next connection at once
            if failure is None:  # stopped cleanly, offline said: leave no session behind
                if self.settings.protocol != "5":
                    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                        async with asyncio.timeout(DROP_SESSION_TIMEOUT_S):
                            await self._drop_broker_session()
                return
            if self._stopping.is_set():
                break
            self._renewing = False  # what follows is a reconnection, counted as one
            if failure != self._last_error:
                log.warning("MQTT: %s; retrying", failure)
            else:
                log.debug("MQTT: %s; retrying", failure)
            self._last_error = failure
            await self._wait_to_retry(delay * random.uniform(0.75, 1.25), probe=unreachable)
            # After a connection that worked, start again from the shortest wait.
            delay = self._backoff[0] if self._reset_backoff else min(delay * 2, self._backoff[1])
            self._reset_backoff = False
        if self._will_withheld:
            # Stopped after a renewal closed the last connection and before another could
            # open (at once, or after it failed and while waiting to retry).
            await self._say_offline_after_renewal()

    async def _wait_to_retry(self, wait: float, *, probe: bool) -> None:
        """Wait ``wait`` s to connect again, or until the publisher stops.

        With ``probe`` (the broker could not be reached), the broker's port is also tried
        every :data:`PROBE_EVERY_S`; once it has been seen closed and then accepts again,
        the wait ends: a broker back from a restart is reached within about a second,
        not after the rest of a long back-off. A port that never closed (a broker that
        accepts but fails the connection) leaves the back-off as it is.
        """
        if not probe:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stopping.wait()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        seen_closed = not await self._port_open()
        while not self._stopping.is_set() and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, PROBE_EVERY_S)):
                    await self._stopping.wait()
            if self._stopping.is_set() or loop.time() >= deadline:
                return
            if not await self._port_open():
                seen_closed = True
            elif seen_closed:
                log.debug("MQTT: the broker's port accepts again; connecting")
                return

    async def _port_open(self) -> bool:
        """Whether the broker's port accepts a TCP connection now (closed again at once)."""
        try:
            async with asyncio.timeout(PROBE_EVERY_S):
                _reader, writer = await asyncio.open_connection(
                    self.settings.host, self.settings.port
                )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _describe(self, exc: BaseException) -> str:
        broker = self.settings.redacted()
        if isinstance(exc, aiomqtt.MqttCodeError) and _code(exc.rc) in _AUTH_CODES:
            return (
                f"broker {broker} refused the connection ({exc}); check the user name and "
                "password (the password comes from the environment, not the URL)"
            )
        if isinstance(exc, aiomqtt.MqttCodeError) and "refused" in str(exc).lower():
            return f"broker {broker} refused the connection ({exc})"
        return f"broker {broker}: {str(exc) or type(exc).__name__}"

    def _clears_old_session_first(self) -> bool:
        """Whether the next connection is preceded by one that clears the broker's session
        for us (a clean connection, closed at once).

        The hub keeps a session at the broker, so that its subscriptions, and the commands
        sent to it, outlast a renewal of the will. One left from an earlier run of the hub
        holds commands sent while it was down: meant for then, not now, so a hub's first
        connection starts afresh. MQTT 5 says so in its CONNECT (clean start, and the
        session kept :data:`BROKER_SESSION_EXPIRY_S` after each connection); MQTT 3.1.1
        can only keep a session or drop it, so a clean connection of its own clears the
        old one and every later connection keeps it.
        """
        return not self._broker_session and self.settings.protocol != "5"

    async def _drop_broker_session(self) -> None:
        """Connect with a clean session and close: the broker then holds none of ours.

        MQTT 3.1.1 keeps a session until a clean connection drops it, so a hub stopped
        cleanly leaves none behind (MQTT 5's expires by itself).
        """
        async with self._client(clean=True):
            pass

    def _client(self, *, clean: bool = False) -> aiomqtt.Client:
        """A client for the next connection; with ``clean`` one that leaves no session
        behind and has no will (it only opens and closes: nothing of the hub's to say)."""
        settings = self.settings
        v5 = settings.protocol == "5"
        will = None
        if not clean:
            self._will_session = self._hub_info.get("session_id")
            self._will_stale.clear()
            will = aiomqtt.Will(
                self.topics.hub_status, self._offline_status("connection_lost"), 1, True
            )
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0 if clean else BROKER_SESSION_EXPIRY_S
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=self._client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=will,
            # What must survive is in the outbox; the broker's session for us is what
            # keeps commands coming across a renewal of the will (see _clears_old_session_first).
            clean_session=None if v5 else clean,
            clean_start=(clean or not self._broker_session) if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=settings.keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            tls_context=self._tls,
            # paho checks the host name itself unless told not to (insecure=1 says so).
            tls_insecure=settings.insecure if settings.tls else None,
            logger=logging.getLogger("sensorhub.mqtt.client"),
            # Nagle's algorithm holds a small message back until the broker acknowledges
            # the one before, up to its 40 ms delayed ACK: a rep right after a live value
            # waited that long. Messages are whole; each may go at once.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        bound_incoming(client, keep=MAX_INCOMING_MESSAGE_BYTES)
        take_directly(client, self._on_message)
        return client

    async def _connection(self) -> None:
        """One connection's life: announce, subscribe, then send and receive until it breaks
        (or until its last will should name another session: then it closes, cleanly)."""
        if self._clears_old_session_first():
            await self._drop_broker_session()
        client = self._client()
        # In flight by design (outbox window, a live burst, retained and replies): not
        # worth aiomqtt's warning, which it gives above 10.
        client.pending_calls_threshold = OUTBOX_WINDOW + LIVE_BURST + 16
        held: socket.socket | None = None
        try:
            async with client:
                await self._serve(client)
                if self._renewing:  # the next connection waits for the broker to end this one
                    held = hold_connection(client)
        finally:
            if held is not None:
                await until_broker_closes(held, RENEW_CLOSE_TIMEOUT_S)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """A connection just opened: announce, subscribe, send and receive until it ends."""
        v5 = self.settings.protocol == "5"
        self._broker_session = True
        self._will_withheld = False  # this connection's will stands for the hub now
        self._connected = True
        self._reset_backoff = True
        if self._renewing:  # our own doing, a moment ago: no reconnection to count
            self._renewing = False
            log.debug("MQTT: connected to %s with the new will", self.settings.redacted())
        elif self._ever_connected:
            self._counts["reconnects"] += 1
            log.info("MQTT: connected to %s again", self.settings.redacted())
        else:
            log.info("MQTT: connected to %s", self.settings.redacted())
        self._ever_connected = True
        self._last_error = None
        self._set_hub_status()
        online = self._retained[self.topics.hub_status]
        await client.publish(
            self.topics.hub_status, online, qos=1, retain=True, timeout=PUBLISH_TIMEOUT_S
        )
        self._counts["published"] += 1
        # Everything retained again: the broker may have restarted without persistence.
        self._mark_retained_dirty(discovery_only=False)
        if self._retained[self.topics.hub_status] == online:
            del self._dirty[self.topics.hub_status]
        if self._discovery is not None:
            # First, so that the broker's retained old configs have all come in when
            # the subscriptions below are acknowledged, before any device config goes.
            self._legacy.clear()
            await client.subscribe(self._discovery.legacy_filter, qos=1)
        # MQTT 5 can show the hub a retained command as such even when it arrives live,
        # so it is refused at once rather than carried out now and refused later.
        if v5:
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            await client.subscribe(self.topics.commands, options=options)
        else:
            await client.subscribe(self.topics.commands, qos=1)
        if self._discovery is not None:
            await client.subscribe(self._discovery.birth_topic, qos=1)
        async with asyncio.TaskGroup() as tasks:
            senders = [
                tasks.create_task(self._until_disconnected(client), name="mqtt watch"),
                tasks.create_task(self._send_retained(client), name="mqtt retained"),
                tasks.create_task(self._send_outbox(client), name="mqtt outbox"),
                tasks.create_task(self._send_live(client), name="mqtt live"),
                tasks.create_task(self._send_replies(client), name="mqtt replies"),
                tasks.create_task(self._move_legacy_discovery(client), name="mqtt migrate"),
            ]
            tasks.create_task(self._close_when_asked(client, senders), name="mqtt close")

    def _mark_retained_dirty(self, *, discovery_only: bool) -> None:
        # Discovery first: Home Assistant must know an entity before its state arrives.
        topics = list(self._discovery_topics)
        if not discovery_only:
            topics += [t for t in self._retained if t not in self._discovery_topics]
        dirty = dict.fromkeys(topics, True)
        dirty.update({t: u for t, u in self._dirty.items() if t not in dirty})
        self._dirty = dirty
        self._retained_ready.set()

    async def _close_when_asked(
        self, client: aiomqtt.Client, senders: list[asyncio.Task[None]]
    ) -> None:
        """End the connection when the publisher stops (saying ``offline``) or when its
        last will should name another session (quietly: the next one opens at once)."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        stale = asyncio.ensure_future(self._will_stale.wait())
        try:
            await asyncio.wait({stopping, stale}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            stale.cancel()
        if not self._stopping.is_set():
            await self._drain(RENEW_DRAIN_S, unless_stopping=True)
        if not self._stopping.is_set():
            await _cancel(senders)
            session = self._hub_info.get("session_id")
            log.debug("MQTT: reconnecting with a last will for session %s", session)
            self._renewing = True
            return
        # Stopping (perhaps while draining for a renewal): what is pending has the
        # shutdown's whole time to go, then offline is said while the line still stands.
        deadline = time.monotonic() + self._shutdown_timeout_s
        await self._drain(self._shutdown_timeout_s)
        await _cancel(senders)
        await self._say_offline(client, deadline)
        log.info("MQTT: disconnecting from %s", self.settings.redacted())

    async def _drain(self, at_most_s: float, *, unless_stopping: bool = False) -> None:
        """Wait until the outbox and the replies are sent, for at most ``at_most_s`` (and,
        ``unless_stopping``, only until the publisher is asked to stop)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                while self._pending_outbox() or self._replies:
                    if unless_stopping and self._stopping.is_set():
                        return
                    self._progress.clear()
                    await self._progress.wait()

    async def _say_offline(self, client: aiomqtt.Client, deadline: float) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self.topics.hub_status,
                self._offline_status("shutdown"),
                qos=1,
                retain=True,
                timeout=max(OFFLINE_AT_LEAST_S, deadline - time.monotonic()),
            )

    async def _say_offline_after_renewal(self) -> None:
        """Stopped after a renewal's first connection closed cleanly (so no will was sent)
        and before a second was up: say offline on one short connection of its own."""
        deadline = time.monotonic() + self._shutdown_timeout_s
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(self._shutdown_timeout_s), self._client() as client:
                await self._say_offline(client, deadline)
                log.info("MQTT: disconnecting from %s", self.settings.redacted())

    def _pending_outbox(self) -> int:
        return len(self._outbox) if self._outbox is not None else 0

    # Senders -------------------------------------------------------------------------------

    async def _send_outbox(self, client: aiomqtt.Client) -> None:
        """Publish the outbox in ``seq`` order, a window at a time; delete after the PUBACKs."""
        outbox = self._outbox
        assert outbox is not None
        while True:
            self._outbox_ready.clear()
            batch = outbox.peek(OUTBOX_WINDOW)
            if not batch:
                await self._outbox_ready.wait()
                continue
            # paho sends in the order publish is called and tasks start in creation
            # order, so the window goes out in seq order; the broker keeps that order.
            async with asyncio.TaskGroup() as window:
                for message in batch:
                    window.create_task(
                        client.publish(
                            message.topic,
                            message.payload,
                            qos=message.qos,
                            retain=message.retain,
                            timeout=PUBLISH_TIMEOUT_S,
                        ),
                        name=f"mqtt publish seq {message.seq}",
                    )
            outbox.ack(batch[-1].seq)
            self._counts["published"] += len(batch)
            self._progress.set()

    async def _send_retained(self, client: aiomqtt.Client) -> None:
        """Publish retained topics that changed; tilt-only state changes at most once a second."""
        while True:
            self._retained_ready.clear()
            now = time.monotonic()
            wait: float | None = None
            for topic, urgent in list(self._dirty.items()):
                due = self._retained_sent_at.get(topic, -math.inf) + STATE_MIN_INTERVAL_S
                if not urgent and due > now:
                    wait = due - now if wait is None else min(wait, due - now)
                    continue
                payload = self._retained[topic]
                del self._dirty[topic]
                if self._waits_for_move(topic):
                    self._legacy_ready.set()  # it goes out with the move, in between
                    continue
                await client.publish(topic, payload, qos=1, retain=True, timeout=PUBLISH_TIMEOUT_S)
                self._counts["published"] += 1
                self._retained_sent_at[topic] = time.monotonic()
                if not payload and topic not in self._dirty:
                    del self._retained[topic]  # cleared at the broker: nothing left to repeat
            if self._dirty and wait is None:
                continue  # changed while we were publishing
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._retained_ready.wait()

    async def _send_live(self, client: aiomqtt.Client) -> None:
        """Publish the latest live value per topic, at most one per live interval on average."""
        while True:
            self._live_ready.clear()
            now = time.monotonic()
            wait: float | None = None
            due_now: list[tuple[str, bytes]] = []
            for topic, (payload, made) in list(self._live.items()):
                if now - made > LIVE_STALE_S:
                    del self._live[topic]
                    self._counts["dropped_live"] += 1
                    continue
                due = self._live_next.get(topic, -math.inf)
                if due > now:
                    wait = due - now if wait is None else min(wait, due - now)
                    continue
                del self._live[topic]
                # The next slot is an interval after this one's, not after now: the analysis
                # already spaces live values by sample time, and a value the radio's jitter
                # brings early is not held back a whole interval. Over any stretch of time a
                # topic sends at most one message more than live_rate_hz allows.
                self._live_next[topic] = max(due + self._interval_s, now)
                due_now.append((topic, payload))
            # Several at once: the client writes what is queued in one go instead of one
            # socket wake-up per message (a third less CPU a message with many athletes).
            for start in range(0, len(due_now), LIVE_BURST):
                burst = due_now[start : start + LIVE_BURST]
                await asyncio.gather(
                    *(
                        client.publish(topic, payload, qos=0, timeout=PUBLISH_TIMEOUT_S)
                        for topic, payload in burst
                    )
                )
                self._counts["published"] += len(burst)
            if wait is None and self._live:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._live_ready.wait()

    def _waits_for_move(self, topic: str) -> bool:
        """Whether a device config holds entities whose old per-entity config is still up."""
        ids = self._discovery_topics.get(topic, set())
        return not ids.isdisjoint(self._legacy.values())

    async def _move_legacy_discovery(self, client: aiomqtt.Client) -> None:
        """Move entities from their old per-entity configs onto the device configs.

        In the order Home Assistant documents: ``migrate_discovery`` on each old topic (the
        entity is unloaded, its registry entry kept), the device config with the same
        ``unique_id`` (it comes back with its history), then the old topic cleared. An
        old config whose entity this hub does not announce (an athlete not seen since
        the start) waits until it does: the entity keeps working meanwhile.
        """
        while True:
            self._legacy_ready.clear()
            announced = set().union(*self._discovery_topics.values())
            due = {t: uid for t, uid in self._legacy.items() if not uid or uid in announced}
            if not due:
                await self._legacy_ready.wait()
                continue
            moving = {uid for uid in due.values() if uid}
            for topic, uid in due.items():
                if uid:
                    await self._publish_retained(client, topic, MIGRATE_DISCOVERY)
            for topic, ids in list(self._discovery_topics.items()):
                if not ids.isdisjoint(moving):
                    self._dirty.pop(topic, None)
                    await self._publish_retained(client, topic, self._retained[topic])
            for topic in due:
                await self._publish_retained(client, topic, b"")
                self._legacy.pop(topic, None)
            if moving:
                log.info("MQTT: moved %d Home Assistant entities to device discovery", len(moving))

    async def _publish_retained(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        await client.publish(topic, payload, qos=1, retain=True, timeout=PUBLISH_TIMEOUT_S)
        self._counts["published"] += 1
        self._retained_sent_at[topic] = time.monotonic()

    async def _send_replies(self, client: aiomqtt.Client) -> None:
        while True:
            self._replies_ready.clear()
            while self._replies:
                payload, response_topic, correlation = self._replies[0]
                await client.publish(
                    self.topics.command_response, payload, qos=1, timeout=PUBLISH_TIMEOUT_S
                )
                if response_topic and self.settings.protocol == "5":
                    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    if correlation is not None:
                        properties.CorrelationData = correlation
                    await client.publish(
                        response_topic,
                        payload,
                        qos=1,
                        properties=properties,
                        timeout=PUBLISH_TIMEOUT_S,
                    )
                self._replies.popleft()
                self._counts["published"] += 1
                self._progress.set()
            await self._replies_ready.wait()

    # Receiving -----------------------------------------------------------------------------

    async def _until_disconnected(self, client: aiomqtt.Client) -> None:
        """Return when the connection breaks: messages come to :meth:`_on_message` instead."""
        async for _message in client.messages:
            pass

    def _on_message(self, message: MQTTMessage) -> None:
        """Take one message as it is read: discovery's birth message, or a command."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            return  # no topic of ours
        if topic == self.topics.commands:
            self._intake.take(message)
        elif self._discovery is None:
            return
        elif topic == self._discovery.birth_topic:
            if message.payload.strip() == b"online":
                log.info("MQTT: Home Assistant is online; sending discovery again")
                self._mark_retained_dirty(discovery_only=True)
        elif message.retain:  # what the broker held, not our own move passing by
            unique_id = self._discovery.legacy_unique_id(topic, bytes(message.payload))
            if unique_id is not None:
                self._legacy[topic] = unique_id
                self._legacy_ready.set()

    async def _command_worker(self) -> None:
        """Carry out commands one at a time, in the order they came."""
        while True:
            payload, response_topic, correlation = await self._intake.next()
            self._counts["commands"] += 1
            reply = await self._carry_out(payload)
            self._reply(reply, response_topic, correlation)

    async def _carry_out(self, payload: bytes) -> dict[str, Any]:
        try:
            command = parse_command(payload)
        except CommandError as exc:
            log.info("MQTT: refused a command: %s", exc)
            return error_reply(*reply_ids(payload), str(exc))
        if self._on_command is None:
            return error_reply(command.id, command.name, "this hub does not take commands")
        try:
            result = await self._on_command(command)
        except SensorhubError as exc:
            return error_reply(command.id, command.name, str(exc))
        except Exception as exc:  # a handler's bug must not stop the hub taking commands
            log.exception("MQTT: command %s failed", command.name)
            return error_reply(
                command.id, command.name, f"internal error: {type(exc).__name__}: {exc}"
            )
        return ok_reply(command, result)

    def _reply(
        self, reply: Mapping[str, Any], response_topic: str | None, correlation: bytes | None
    ) -> None:
        if len(self._replies) >= MAX_PENDING_REPLIES:
            self._replies.popleft()  # nobody is reading them while the broker is away
            self._counts["dropped_replies"] += 1
        self._replies.append((_json(reply, default=str), response_topic, correlation))
        self._replies_ready.set()

    def _reply_refusal(
        self, reply: Mapping[str, Any], response_topic: str | None, correlation: bytes | None
    ) -> None:
        """Answer a command refused as it arrived, unless refusals already fill their half."""
        if len(self._replies) >= REFUSAL_REPLIES_AT_MOST:
            self._counts["unanswered_refusals"] += 1
            return
        self._reply(reply, response_topic, correlation)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    On Python 3.11 a cancellation that lands just as an awaited PUBACK arrives can be
    lost inside ``asyncio.wait_for`` (which aiomqtt's publish uses): the sender then
    carried on, the connection never closed, and every other sender had stopped. A
    task that is still running is cancelled again.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)


def _json(obj: Mapping[str, Any], *, default: Callable[[Any], Any] | None = None) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=default).encode()


def _code(rc: object) -> int | None:
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None
