"""A zero-setup MQTT broker inside the hub, for when no broker URL is given.

amqtt (a pure-Python asyncio broker) runs in the hub's own event loop. It allows
anonymous clients, so it only ever listens on a loopback address: anything that should
reach the hub from the network needs a real broker (mosquitto) with passwords.
amqtt speaks MQTT 3.1.1 only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from typing import Any, Final

from sensorhub.errors import ConfigError, MqttError

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)

_CHATTY_LOGGERS: Final = ("amqtt", "transitions")
"""They log every connection and state change at INFO: fine for amqtt's authors, not a gym."""


class EmbeddedBroker:
    """amqtt on a loopback port; an async context manager. ``url`` says where it listens.

    When ``port`` is taken (another broker already runs there), a free port is used
    instead and ``url`` says which.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        if not _is_loopback(host):
            raise ConfigError(
                f"embedded MQTT broker host {host!r}: it allows anonymous clients, so it only "
                "listens on localhost (127.0.0.1 or ::1); run mosquitto with passwords and "
                "give its URL to serve a network"
            )
        if not 0 <= port <= 65535:
            raise ConfigError(f"embedded MQTT broker port {port}: use 0-65535 (0: any free port)")
        self.host = host
        self.requested_port = port
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        """Where clients connect, e.g. ``mqtt://127.0.0.1:1883``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    async def __aenter__(self) -> EmbeddedBroker:
        from amqtt.broker import Broker  # noqa: PLC0415 - amqtt is heavy; only load it when asked
        from amqtt.errors import BrokerError  # noqa: PLC0415

        for name in _CHATTY_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)
        last_error: Exception | None = None
        for _attempt in range(3):  # a free port can be taken between looking and binding
            self.port = _free_port(self.host, self.requested_port)
            if self.requested_port and self.port != self.requested_port:
                log.warning(
                    "port %d on %s is in use; the embedded MQTT broker listens on %d instead",
                    self.requested_port,
                    self.host,
                    self.port,
                )
            broker = Broker(self._config())
            try:
                await broker.start()
            except BrokerError as exc:
                last_error = exc
                continue
            self._broker = broker
            log.info("embedded MQTT broker listening on %s", self.url)
            return self
        raise MqttError(
            f"the embedded MQTT broker could not listen on {self.host}: {last_error}; give a "
            "broker URL (mqtt://host:port) or another port"
        )

    async def __aexit__(self, *exc_info: object) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
            log.info("embedded MQTT broker on %s stopped", self.url)

    def _config(self) -> dict[str, Any]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self.port}"}},
            # Only anonymous auth: no $SYS topics every 20 s, no per-packet logging.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_port(host: str, wanted: int) -> int:
    """``wanted`` if it can be bound now, else a port the system says is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as probe:
        # The same option asyncio's server uses, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if wanted:
            try:
                probe.bind((host, wanted))
            except OSError:
                pass
            else:
                return wanted
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
