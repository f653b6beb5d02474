"""A real mosquitto for tests, on a free port, and a subscriber that records what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import getpass
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate for 127.0.0.1 / localhost that it signed (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate signed by it, made with ``cryptography``."""
    from cryptography import x509  # noqa: PLC0415 - only the TLS tests need it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensorhub test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class Mosquitto:
    """One mosquitto process with a config written for the test; an async context manager.

    ``users`` turns anonymous access off and writes a password file; ``tls`` listens with
    that certificate; ``persistence`` keeps sessions across :meth:`kill` (saved every
    second), as a broker with a disk does.
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        persistence: bool = False,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.users = users
        self.tls = tls
        self.persistence = persistence
        self.config = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            # As root mosquitto would switch to the 'mosquitto' user, which cannot read our files.
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type all",
            "max_queued_messages 100000",
        ]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            password_file = self.directory / "passwords"
            password_file.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
            ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        self.config.write_text("\n".join(lines) + "\n")

    async def start(self) -> None:
        self._write_config()
        with self.log_file.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                MOSQUITTO, "-c", str(self.config), stdout=log, stderr=subprocess.STDOUT
            )
        for _ in range(250):
            if self.process.returncode is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log()}")
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.02)
        self.process.kill()
        await self.process.wait()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log()}")

    async def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(sig)
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def stop(self) -> None:
        """Stop cleanly (SIGTERM)."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed broker or a pulled plug."""
        await self._end(signal.SIGKILL)

    async def restart(self) -> None:
        """Start again on the same port."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None = None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """An aiomqtt client that records every message on its filters, for assertions."""

    url_port: int
    filters: list[str]
    messages: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.messages):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def subscribe(
    port: int,
    *filters: str,
    client_id: str | None = None,
    clean_session: bool = True,
    reconnect: bool = False,
    **client_args: Any,
) -> AsyncIterator[Subscriber]:
    """Record messages on ``filters``; with ``reconnect``, keep trying through broker restarts."""
    subscriber = Subscriber(port, list(filters))
    args: dict[str, Any] = {"identifier": client_id, **client_args}
    if "protocol" not in args:  # MQTT 5 has clean_start instead
        args["clean_session"] = clean_session
    ready = asyncio.Event()

    async def run() -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", port, **args) as client:
                    for topic_filter in filters:
                        await client.subscribe(topic_filter, qos=1)
                    ready.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        subscriber.messages.append(
                            Received(
                                message.topic.value,
                                message.payload,
                                message.retain,
                                getattr(message.properties, "CorrelationData", None),
                            )
                        )
                        subscriber.changed.set()
            except aiomqtt.MqttError:
                if not reconnect:
                    raise
                await asyncio.sleep(0.1)

    task = asyncio.create_task(run(), name="test subscriber")
    try:
        waiter = asyncio.create_task(ready.wait(), name="test subscriber ready")
        await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # its error, not a timeout
        assert ready.is_set(), "the test subscriber did not subscribe within 10 s"
        yield subscriber
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Return once ``condition()`` holds; TimeoutError after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the publisher's state has no event to wait on
            await asyncio.sleep(0.02)


def env_without_pytest() -> dict[str, str]:
    """The environment for a child Python (unbuffered, so its lines arrive as written)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


# Records as the service makes them (through sensorhub.records), for the publisher tests.

CLOCK_OFFSET_S = 1_780_000_000.0


def rep(
    athlete: str, set_index: int, rep_in_set: int, t: float, mcv: float = 0.5
) -> dict[str, Any]:
    from sensorhub.analysis.events import RepCompleted  # noqa: PLC0415
    from sensorhub.analysis.reps import Rep  # noqa: PLC0415
    from sensorhub.analysis.tilt import RepTilt  # noqa: PLC0415
    from sensorhub.records import WallClock, rep_record  # noqa: PLC0415

    the_rep = Rep(
        index=rep_in_set,
        t_start=t - 2.0,
        t_end=t,
        eccentric_start=t - 2.0,
        eccentric_end=t - 1.2,
        concentric_start=t - 1.0,
        concentric_end=t - 0.3,
        lockout_start=t - 0.3,
        lockout_end=t,
        mcv_mps=mcv,
        peak_velocity_mps=mcv * 1.6,
        mpv_mps=mcv * 1.1,
        rom_m=0.3,
        concentric_s=0.7,
        eccentric_s=0.8,
        lockout_hold_s=0.3,
        time_under_tension_s=1.8,
        partial=False,
        mean_power_w=None,
    )
    tilt = RepTilt(bottom_deg=-3.0, lockout_deg=2.0, range_deg=5.0, verdict="ok", reason=None)
    event = RepCompleted(athlete, "hip_thrust", set_index, rep_in_set, the_rep, tilt, "bar_imu")
    record = rep_record(event, WallClock(CLOCK_OFFSET_S))
    record["session_id"] = 1
    return record


def set_(athlete: str, set_index: int, t: float, reps: int = 5) -> dict[str, Any]:
    from sensorhub.analysis.events import SetCompleted  # noqa: PLC0415
    from sensorhub.analysis.sets import SetSummary  # noqa: PLC0415
    from sensorhub.records import WallClock, set_record  # noqa: PLC0415

    summary = SetSummary(
        index=set_index,
        t_start=t - 20.0,
        t_end=t,
        reps=(),
        rep_count=reps,
        best_mcv_mps=0.6,
        mean_mcv_mps=0.5,
        last_mcv_mps=0.45,
        velocity_loss_pct=25.0,
        rest_before_s=None,
        rest_pauses_s=(1.5,),
    )
    record = set_record(SetCompleted(athlete, "hip_thrust", summary), WallClock(CLOCK_OFFSET_S))
    record["session_id"] = 1
    return record


def alert(athlete: str, t: float) -> dict[str, Any]:
    from sensorhub.analysis.events import Alert  # noqa: PLC0415
    from sensorhub.records import WallClock, alert_record  # noqa: PLC0415

    event = Alert(athlete, t, "velocity_loss", "velocity loss 25 %: stop the set", 1, 5)
    return alert_record(event, WallClock(CLOCK_OFFSET_S))


def tilt(athlete: str, t: float, degrees: float) -> dict[str, Any]:
    from sensorhub.analysis.events import TiltUpdate  # noqa: PLC0415
    from sensorhub.records import WallClock, tilt_record  # noqa: PLC0415

    return tilt_record(TiltUpdate(athlete, t, degrees), WallClock(CLOCK_OFFSET_S))


def velocity(athlete: str, t: float, mps: float) -> dict[str, Any]:
    from sensorhub.analysis.events import VelocityUpdate  # noqa: PLC0415
    from sensorhub.records import WallClock, velocity_record  # noqa: PLC0415

    return velocity_record(
        VelocityUpdate(athlete, t, mps, 0.1, "bar_imu"), WallClock(CLOCK_OFFSET_S)
    )


def session(event: str, session_id: int = 1) -> dict[str, Any]:
    """A session record as the service writes it."""
    return {
        "type": "session",
        "ts": "2026-06-01T10:00:00.000Z",
        "t": 1_780_308_000.0,
        "event": event,
        "session_id": session_id,
        "athletes": ["Ann"],
        "sets": 0,
        "reps": 0,
    }


def sensor_status(
    address: str, *, state: str = "streaming", frames: int = 100, battery: int | None = 80
) -> dict[str, Any]:
    from sensorhub.records import sensor_status_record  # noqa: PLC0415
    from sensorhub.stream import LinkState, SensorStatus  # noqa: PLC0415

    status = SensorStatus(
        address=address,
        role="pelvis",
        athlete="Ann",
        state=LinkState(state),
        battery_pct=battery,
        rssi=-60,
        sample_rate_hz=200.0,
        frames_received=frames,
        samples_received=frames * 10,
        frames_lost=0,
        samples_lost=0,
        frames_dropped_by_hub=0,
        corrupt_frames=0,
        reconnects=0,
        clock_drift_ppm=3.2,
        last_error=None,
    )
    return sensor_status_record(status)
