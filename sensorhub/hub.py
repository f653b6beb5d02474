"""The hub: one link per registered sensor, kept in step with the registry while it runs.

Pairing, forgetting and renaming are operations of the running hub (the CLI and, later,
the MQTT command topic call the same methods), and the hub also notices when another
process changes the registry: a newly paired sensor starts streaming within a second or
two, a forgotten one is released, and the other athletes' streams are not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sensorhub.ble.link import SensorLink
from sensorhub.ble.radio import Radio
from sensorhub.errors import SensorhubError
from sensorhub.pairing import Progress, pair_sensor
from sensorhub.registry import RegisteredSensor, SensorRegistry
from sensorhub.stream import SensorBatch, SensorStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HubConfig:
    """How the hub runs its sensors."""

    imu_rate_hz: int = 200
    accel_range_g: int = 16
    gyro_range_dps: int = 2000
    bar_rate_hz: int = 100
    registry_poll_s: float = 0.5


BatchHandler = Callable[[RegisteredSensor, SensorBatch], None]
StatusHandler = Callable[[SensorStatus], None]


def _identity(sensor: RegisteredSensor) -> tuple[str, str, str, str]:
    """What a running link is for: a change restarts it (a new bond too, so a link
    waiting out a lost bond's back-off connects at once)."""
    return (sensor.kind, sensor.role, sensor.athlete, sensor.paired_at)


class Hub:
    """Runs the links of every registered sensor; an async context manager."""

    def __init__(
        self,
        radio: Radio,
        registry: SensorRegistry,
        *,
        config: HubConfig | None = None,
        on_batch: BatchHandler | None = None,
        on_status: StatusHandler | None = None,
    ) -> None:
        self.radio = radio
        self.registry = registry
        self.config = config or HubConfig()
        self._on_batch = on_batch
        self._on_status = on_status
        self.links: dict[str, SensorLink] = {}
        self._link_tasks: dict[str, asyncio.Task[None]] = {}
        self._registered: dict[str, RegisteredSensor] = {}
        self._signature: tuple[int, int] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Hub:
        self._runner = asyncio.create_task(self._run(), name="hub")
        await self._ready.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            self._reconcile()
            self._ready.set()
            tasks.create_task(self._watch_registry(), name="hub registry watch")

    # Registry ---------------------------------------------------------------------------

    async def _watch_registry(self) -> None:
        while True:
            await asyncio.sleep(self.config.registry_poll_s)
            if self.registry.signature() != self._signature:
                self._reconcile()

    def _reconcile(self) -> None:
        """Start links for new sensors, stop links for forgotten or changed ones."""
        self._signature = self.registry.signature()
        try:
            wanted = self.registry.load()
        except SensorhubError as exc:
            # A damaged registry must not stop the athletes already streaming.
            log.error("%s; keeping the sensors already running", exc)
            return
        for address in list(self._link_tasks):
            current = wanted.get(address)
            running = self._registered[address]
            if current is None or _identity(current) != _identity(running):
                self._stop_link(address)
            else:
                self._registered[address] = current  # a new name needs no reconnect
        for address, sensor in wanted.items():
            if address not in self._link_tasks:
                self._start_link(sensor)

    def _start_link(self, sensor: RegisteredSensor) -> None:
        assert self._tasks is not None
        config = self.config
        link = SensorLink(
            self.radio,
            sensor,
            rate_hz=config.imu_rate_hz if sensor.kind == "imu" else config.bar_rate_hz,
            accel_range_g=config.accel_range_g,
            gyro_range_dps=config.gyro_range_dps,
            on_status=self._on_status,
        )
        self.links[sensor.address] = link
        self._registered[sensor.address] = sensor
        self._link_tasks[sensor.address] = self._tasks.create_task(
            self._run_link(sensor, link), name=f"hub link {sensor.address}"
        )
        log.info("streaming %s (%s)", sensor.label, sensor.address)

    def _stop_link(self, address: str) -> None:
        task = self._link_tasks.pop(address)
        task.cancel()
        self.links.pop(address, None)
        self._registered.pop(address, None)
        log.info("released %s", address)

    async def _run_link(self, sensor: RegisteredSensor, link: SensorLink) -> None:
        async with link:
            async for batch in link.batches():
                if self._on_batch is not None:
                    self._on_batch(sensor, batch)

    # Service-level operations -----------------------------------------------------------

    async def pair(
        self,
        address: str,
        *,
        role: str,
        athlete: str,
        name: str = "",
        progress: Progress = lambda _line: None,
        calibrate: bool = True,
    ) -> RegisteredSensor:
        """Pair a sensor while the others keep streaming, and start its link at once."""
        sensor = await pair_sensor(
            self.radio,
            self.registry,
            address,
            role=role,
            athlete=athlete,
            name=name,
            progress=progress,
            calibrate=calibrate,
        )
        self._reconcile()
        return sensor

    async def forget(self, address: str) -> RegisteredSensor:
        """Release a sensor's link, remove it from the registry and delete the bond."""
        removed = self.registry.forget(address)
        self._reconcile()
        await self.radio.forget_bond(removed.address)
        return removed

    def rename(self, address: str, name: str) -> RegisteredSensor:
        """Give a sensor a name for people."""
        renamed = self.registry.rename(address, name)
        self._reconcile()
        return renamed

    def statuses(self) -> list[SensorStatus]:
        """Every running link's status now."""
        return [link.status() for link in self.links.values()]
