"""Where the MQTT broker is and how to talk to it, parsed from one URL.

``mqtt://[user[:password]@]host[:port][?protocol=5&ca=/path&insecure=1&client_id=x]``;
``mqtts://`` is the same over TLS. The password is better given apart from the URL (an
environment variable) so it never lands in a config file or a log line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from sensorhub.errors import ConfigError

__all__ = ["BrokerSettings", "Protocol"]

Protocol = Literal["3.1.1", "5"]

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
_QUERY_KEYS: Final = ("protocol", "ca", "insecure", "client_id", "keepalive")
_PROTOCOL_SPELLINGS: Final[dict[str, Protocol]] = {
    "3.1.1": "3.1.1",
    "311": "3.1.1",
    "4": "3.1.1",
    "5": "5",
    "5.0": "5",
}
_TRUE: Final = {"1", "true", "yes", "on", ""}  # a bare ?insecure means yes
_FALSE: Final = {"0", "false", "no", "off"}
EXAMPLE: Final = "e.g. mqtt://localhost:1883 or mqtts://coach@broker.local?protocol=5"


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """How to reach one MQTT broker; checked when made."""

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: Protocol = "3.1.1"
    ca_file: Path | None = None
    """CA certificates (PEM) to trust instead of the system's; TLS only."""
    insecure: bool = False
    """TLS without checking the certificate or host name: for a test broker only."""
    client_id: str | None = None
    """None: ``sensorhub-<hub>-<random>``, so two hubs never knock each other off."""
    keepalive_s: int = 30

    def __post_init__(self) -> None:
        if not self.host or any(c in self.host for c in "/@?# "):
            raise ConfigError(f"MQTT host {self.host!r} is not a host name; {EXAMPLE}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"MQTT port {self.port} is out of range; use 1-65535 (1883, 8883)")
        if self.protocol not in get_args(Protocol):
            raise ConfigError(f"MQTT protocol {self.protocol!r}: use 3.1.1 or 5")
        if not self.tls and (self.ca_file is not None or self.insecure):
            raise ConfigError(
                "MQTT ca/insecure only apply to TLS; use an mqtts:// URL for a TLS broker"
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ConfigError(
                f"MQTT CA file {str(self.ca_file)!r} does not exist; give the path of the "
                "broker's CA certificate (PEM), or leave ca out to trust the system's CAs"
            )
        if self.password is not None and self.username is None:
            raise ConfigError("an MQTT password needs a user name: mqtt://USER@host")
        if self.client_id is not None and not 1 <= len(self.client_id) <= 64:
            raise ConfigError(f"MQTT client_id {self.client_id!r}: use 1 to 64 characters")
        if not 5 <= self.keepalive_s <= 3600:
            raise ConfigError(f"MQTT keepalive {self.keepalive_s} s: use 5 to 3600 seconds")

    @classmethod
    def from_url(cls, url: str, *, password: str | None = None) -> BrokerSettings:
        """Settings from a broker URL; ``password`` (from the environment) wins over the URL's."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"MQTT URL {_redact(url)!r}: {exc}; {EXAMPLE}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ConfigError(
                f"MQTT URL {_redact(url)!r}: scheme {parts.scheme!r} is not mqtt:// or "
                f"mqtts://; {EXAMPLE}"
            )
        if not parts.hostname:
            raise ConfigError(f"MQTT URL {_redact(url)!r} has no host; {EXAMPLE}")
        if parts.path not in {"", "/"} or parts.fragment:
            raise ConfigError(
                f"MQTT URL {_redact(url)!r}: a broker URL has no path or #fragment; "
                "topics are set by [mqtt] prefix, not in the URL"
            )
        query = _query(url, parts.query)
        ca = query.get("ca")
        return cls(
            host=parts.hostname,
            port=DEFAULT_PORTS[scheme] if port is None else port,
            tls=scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=password if password is not None else _url_password(parts.password),
            protocol=_protocol(query.get("protocol", "3.1.1")),
            ca_file=Path(ca).expanduser() if ca else None,
            insecure=_flag("insecure", query.get("insecure", "0")),
            client_id=query.get("client_id") or None,
            keepalive_s=_int("keepalive", query.get("keepalive", "30")),
        )

    @property
    def url(self) -> str:
        """The URL these settings come from, without the password."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = []
        if self.protocol != "3.1.1":
            query.append(f"protocol={self.protocol}")
        if self.ca_file is not None:
            query.append(f"ca={self.ca_file}")
        if self.insecure:
            query.append("insecure=1")
        if self.client_id is not None:
            query.append(f"client_id={quote(self.client_id, safe='')}")
        tail = "?" + "&".join(query) if query else ""
        return f"{scheme}://{user}{host}:{self.port}{tail}"

    def redacted(self) -> str:
        """The broker for log lines and people: the URL without the password."""
        return self.url

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context for these settings (None without TLS); bad CA files raise ConfigError."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"MQTT CA file {str(self.ca_file)!r} cannot be used ({exc}); give a PEM file "
                "of CA certificates"
            ) from None
        if self.insecure:
            # Asked for by name in the URL: a test broker with a throwaway certificate.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.sslsocket_class = _ClosingSSLSocket
        return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when the handshake fails.

    paho-mqtt drops the socket unclosed when the broker's certificate is refused, and the
    garbage collector then complains about it long after, somewhere unrelated.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _redact(url: str) -> str:
    """The URL as typed, without a password in it."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparseable URL>"


def _url_password(raw: str | None) -> str | None:
    return unquote(raw) if raw else None


def _query(url: str, raw: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=bool(raw))
    except ValueError:
        raise ConfigError(
            f"MQTT URL {_redact(url)!r}: the query {raw!r} is not key=value&key=value"
        ) from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key not in _QUERY_KEYS:
            raise ConfigError(
                f"MQTT URL {_redact(url)!r}: unknown option {key!r}; the options are "
                + ", ".join(_QUERY_KEYS)
            )
        if key in query:
            raise ConfigError(f"MQTT URL {_redact(url)!r}: {key} is given twice")
        query[key] = value
    return query


def _protocol(value: str) -> Protocol:
    try:
        return _PROTOCOL_SPELLINGS[value.lower()]
    except KeyError:
        raise ConfigError(f"MQTT protocol={value!r}: use protocol=3.1.1 or protocol=5") from None


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"MQTT {name}={value!r}: use {name}=1 or {name}=0")


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"MQTT {name}={value!r}: give a whole number of seconds") from None
