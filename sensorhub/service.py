"""The running hub: sensor links, analysis, MQTT, the session store and a live view.

Data flows one way::

    Hub (links) ─batches─▶ Service ─▶ SessionStore (raw frames)
                                  └─▶ SessionPipeline (one analyzer per athlete) ─records─▶
                                        MqttPublisher · SessionStore · LiveView

The service is the wiring: the analysis of a session, with everything that decides how
it runs, is :class:`~sensorhub.pipeline.SessionPipeline` (a replay runs the same one on
stored frames). The pipeline never does I/O and the I/O edges never compute metrics. Commands (from
the MQTT command topic, or the demo) change what the service does: sessions, loads,
pairing, calibration; each answers with a result or a :class:`CommandError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from sensorhub import __version__
from sensorhub.analysis.athlete import AthleteAnalyzer, Role
from sensorhub.analysis.neutral import NEUTRAL_DELAY_S, NEUTRAL_HOLD_S, neutral_window
from sensorhub.analysis.tilt import TiltCalibration
from sensorhub.ble.radio import Radio
from sensorhub.config import ServiceConfig
from sensorhub.errors import CommandError, SensorhubError
from sensorhub.hub import Hub, HubConfig
from sensorhub.mqtt import BrokerSettings, Command, EmbeddedBroker, MqttPublisher, TopicTree
from sensorhub.mqtt.publisher import RECONNECT_DELAY_S
from sensorhub.pipeline import (
    TICK_S,
    AnalysisSettings,
    SessionPipeline,
    analysis_role,
    stored_calibration,
)
from sensorhub.records import Record, WallClock, iso, sensor_status_record
from sensorhub.registry import RegisteredSensor, SensorRegistry
from sensorhub.state import default_state_dir, ensure_state_dir
from sensorhub.store import SessionStore
from sensorhub.stream import SensorBatch, SensorStatus

__all__ = ["RecordSink", "Service", "SessionInfo", "freeze_startup_heap"]

log = logging.getLogger(__name__)

STATUS_EVERY_S: Final = 5.0
COMPLAIN_EVERY_S: Final = 10.0
"""A failure that repeats with every batch (a full disk) is logged at most this often."""


class RecordSink(Protocol):
    """Something that shows records as they happen (the live terminal view)."""

    def on_record(self, record: Record) -> None:
        """An analysis record: rep, set, alert, tilt, velocity, session."""

    def on_sensor(self, record: Record) -> None:
        """A sensor status record."""


@dataclass
class SessionInfo:
    """The session being recorded; ``reps`` and ``sets`` are counted by the store as it ends."""

    id: int
    started_unix: float
    athletes: dict[str, dict[str, Any]]
    reps: int = 0
    sets: int = 0


@dataclass
class _Athlete:
    """One athlete's analysis and the sensors feeding it."""

    name: str
    analyzer: AthleteAnalyzer
    roles: dict[str, Role] = field(default_factory=dict)  # address -> analysis role
    keeps_axis: bool = False
    """The analysis runs on the pelvis's neutral from the registry, so a tilt axis it
    learns belongs beside that neutral (not after a session-measured one)."""
    axis_saved: bool = False  # the tilt axis learned in this analysis is in the registry


class Service:
    """The whole hub as one async context manager; see the module docstring."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        radio: Radio | None = None,
        view: RecordSink | None = None,
        say: Callable[[str], None] = lambda _line: None,
        trace: Callable[[Record, float], None] | None = None,
        mqtt_reconnect_delay_s: tuple[float, float] = RECONNECT_DELAY_S,
    ) -> None:
        self.config = config
        self._trace = trace
        """Told every record with its batch's arrival time (0.0: from the clock): the bench."""
        self._mqtt_reconnect_delay_s = mqtt_reconnect_delay_s
        """The back-off between broker connection attempts (first, longest), in seconds."""
        self.state_dir = ensure_state_dir(config.state_dir or default_state_dir())
        self.registry = SensorRegistry(self.state_dir / "sensors.json")
        self.clock = WallClock()
        self.view = view
        self._say = say
        self._radio = radio
        self._own_radio = radio is None
        self._stack = contextlib.AsyncExitStack()
        self._runner: asyncio.Task[None] | None = None
        self._registry_writes = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="registry"
        )
        """Saves of learned calibration: off the event loop (an fsync), in the order made."""
        self.session: SessionInfo | None = None
        self._athletes: dict[str, _Athlete] = {}
        self._pipeline: SessionPipeline | None = None
        """The running session's analysis."""
        self._loads: dict[str, float | None] = {}
        self._complained: dict[str, float] = {}
        self._storage_shown: dict[str, Any] | None = None  # the problem on the hub status
        self._storage_shown_at = -math.inf
        self.broker_url = ""
        self.broker_display = ""
        """The broker's URL without its password, for people."""
        self.store: SessionStore
        self.publisher: MqttPublisher
        self.hub: Hub

    # Lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Service:
        config = self.config
        try:
            self.store = await self._stack.enter_async_context(
                SessionStore(SessionStore.path_in(self.state_dir))
            )
            if self._radio is None:
                # Before anything is announced: a missing radio ends the start at once.
                self._radio = await self._stack.enter_async_context(
                    Radio(config.ble, state_dir=self.state_dir)
                )
            url = config.broker_url
            if url is None:
                broker = await self._stack.enter_async_context(
                    EmbeddedBroker(port=config.embedded_port)
                )
                url = broker.url
                self._say(f"embedded MQTT broker listening on {url}")
            self.broker_url = url
            settings = BrokerSettings.from_url(url, password=config.mqtt_password)
            self.broker_display = settings.redacted()
            self.publisher = await self._stack.enter_async_context(
                MqttPublisher(
                    settings,
                    topics=TopicTree(prefix=config.mqtt_prefix, hub=config.hub_name),
                    outbox_path=self.state_dir / "outbox.db",
                    live_rate_hz=config.live_rate_hz,
                    discovery_prefix=config.discovery_prefix if config.discovery else None,
                    on_command=self.handle_command,
                    hub_info={
                        "version": __version__,
                        "session_id": None,
                        "problems": {},
                        **_radio_info(self._radio),
                    },
                    reconnect_delay_s=self._mqtt_reconnect_delay_s,
                )
            )
            self._radio.add_listener(self._on_radio)
            self._stack.callback(self._radio.remove_listener, self._on_radio)
            self._announce_cut_off()
            self.hub = await self._stack.enter_async_context(
                Hub(
                    self._radio,
                    self.registry,
                    config=HubConfig(
                        imu_rate_hz=config.imu_rate_hz, bar_rate_hz=config.bar_rate_hz
                    ),
                    on_batch=self._on_batch,
                    on_status=self._on_status,
                )
            )
            if config.auto_start:
                self.start_session()
            self._runner = asyncio.create_task(self._run(), name="service clock")
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        try:
            if self.session is not None:
                self.stop_session()
        finally:
            try:
                await asyncio.to_thread(self._registry_writes.shutdown)  # saves land first
            finally:
                # Links first (no more data), then the publisher drains, then the store.
                await self._stack.aclose()

    async def _run(self) -> None:
        last_status = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            pipeline = self._pipeline
            for name in list(self._athletes):
                assert pipeline is not None  # athletes are analysed only in a session
                try:
                    records = pipeline.tick(name, now)
                except Exception:  # noqa: BLE001 - one athlete's analysis must not stop the hub
                    self._complain(f"analysis {name}", "analysis failed", trace=True)
                    continue
                self._emit(records)
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                for status in self.hub.statuses():
                    self._on_status(status)
            self._show_storage_problem(now)

    # Sessions ---------------------------------------------------------------------------

    def start_session(
        self, *, note: str = "", exercise: str | None = None, athlete: str | None = None
    ) -> SessionInfo:
        """Begin recording; every athlete in the registry takes part."""
        if self.session is not None:
            raise CommandError(
                f"session {self.session.id} is already running; stop it first (stop_session)"
            )
        if exercise is not None and athlete is None:
            raise CommandError("give the athlete whose exercise this is")
        sensors = list(self.registry.load().values())
        names = sorted({s.athlete for s in sensors} | ({athlete} if athlete else set()))
        athletes: dict[str, dict[str, Any]] = {}
        for name in names:
            settings = self.config.athlete(name)
            chosen = exercise if (exercise is not None and name == athlete) else settings.exercise
            athletes[name] = self._athlete_settings(name, chosen)
        session_id = self.store.start_session(
            athletes=athletes, sensors=sensors, clock_offset_s=self.clock.offset_s, note=note
        )
        self.session = SessionInfo(session_id, time.time(), athletes)
        self._athletes.clear()
        self._pipeline = SessionPipeline(self.clock, session_id=session_id)
        self.publisher.set_hub_info(session_id=session_id)
        self._publish_session("started")
        log.info("session %d started (%s)", session_id, ", ".join(names) or "no athletes yet")
        return self.session

    def stop_session(self) -> SessionInfo:
        """Finish the analysis in flight, record it and close the session."""
        session = self.session
        if session is None:
            raise CommandError("no session is running; start one first (start_session)")
        for athlete in list(self._athletes.values()):
            self._save_tilt_axis(athlete)  # refined since it was first saved
        if self._pipeline is not None:
            self._emit(self._pipeline.flush())
        self._athletes.clear()
        self._pipeline = None
        self.store.end_session(session.id)
        # What the store holds, written or waiting for the disk: never a rep it lost.
        session.sets, session.reps = self.store.counts(session.id)
        self._publish_session("stopped")
        self.session = None
        self.publisher.set_hub_info(session_id=None)
        log.info("session %d stopped: %d sets, %d reps", session.id, session.sets, session.reps)
        return session

    def _announce_cut_off(self) -> None:
        """Say on the events topic which sessions a crash ended: found when the store
        opened, each with what it holds (the sets and whole reps recorded before)."""
        if not self.store.cut_off:
            return
        listed = {s["id"]: s for s in self.store.sessions()}
        for session_id in self.store.cut_off:
            found = listed[session_id]
            self.publisher.publish_record(
                _session_record(
                    "interrupted", session_id, found["athletes"], found["sets"], found["reps"]
                )
            )
            log.warning(
                "session %d was cut off (the hub stopped without ending it): "
                "%d sets and %d reps were recorded before",
                session_id,
                found["sets"],
                found["reps"],
            )

    def _publish_session(self, what: str) -> None:
        session = self.session
        assert session is not None
        record = _session_record(what, session.id, session.athletes, session.sets, session.reps)
        self.publisher.publish_record(record)
        if self.view is not None:
            self.view.on_record(record)

    # Data in ----------------------------------------------------------------------------

    def _on_batch(self, sensor: RegisteredSensor, batch: SensorBatch) -> None:
        session = self.session
        if session is None:
            return
        try:
            self.store.add_batch(session.id, sensor, batch)
        except SensorhubError as exc:
            # A full disk must not stop the live metrics: they go on, the loss is told.
            self._complain("store", f"{sensor.label}: raw frames not recorded: {exc}")
        try:
            athlete, pipeline = self._athlete_for(sensor)
            role = athlete.roles[sensor.address]
            records = pipeline.feed(athlete.name, role, batch)
        except Exception:  # noqa: BLE001 - one athlete's analysis must not stop the hub
            self._complain(
                f"analysis {sensor.athlete}", f"{sensor.label}: analysis failed", trace=True
            )
            return
        if role == "pelvis" and athlete.keeps_axis and not athlete.axis_saved:
            self._save_tilt_axis(athlete)
        self._emit(records, batch.received_at)

    def _save_tilt_axis(self, athlete: _Athlete) -> None:
        """Keep a newly learned mediolateral axis with the pelvis sensor's calibration.

        A restarted hub, or the next session, then has tilt from the pelvis's first still
        moment instead of after the first swings (the neutral from pairing is kept beside
        it; pairing again, e.g. after clipping the sensor on another way, replaces both).
        The file is written by a worker thread, so the event loop does not wait for the
        disk; saves land in the order they are made (the axis refined at the session's
        end after the one first learned).
        """
        if not athlete.keeps_axis:
            return
        axis = athlete.analyzer.learned_tilt_axis
        pelvis = next((a for a, role in athlete.roles.items() if role == "pelvis"), None)
        if axis is None or pelvis is None:
            return
        athlete.axis_saved = True
        values = {"tilt_axis_sensor": [round(float(v), 5) for v in axis]}
        self._registry_writes.submit(self._write_calibration, athlete.name, pelvis, values)

    def _write_calibration(self, athlete: str, address: str, values: dict[str, Any]) -> None:
        """Registry thread: add ``values`` to a sensor's calibration; a failure is logged."""
        try:
            self.registry.update_calibration(address, values)
        except SensorhubError as exc:
            log.warning("%s: the learned tilt axis was not saved: %s", athlete, exc)
            return
        except Exception:  # a failure in the thread would otherwise go unseen
            log.exception("%s: the learned tilt axis was not saved", athlete)
            return
        log.info("%s: pelvic tilt axis learned and saved with the pelvis sensor", athlete)

    def _athlete_for(self, sensor: RegisteredSensor) -> tuple[_Athlete, SessionPipeline]:
        """The athlete's analysis; started again (after finishing it) when a sensor joins."""
        athlete, pipeline = self._athletes.get(sensor.athlete), self._pipeline
        assert self.session is not None
        assert pipeline is not None
        if athlete is not None and sensor.address in athlete.roles:
            return athlete, pipeline
        mine = [s for s in self.registry.load().values() if s.athlete == sensor.athlete]
        if sensor.address not in {s.address for s in mine}:
            mine.append(sensor)
        roles = {s.address: analysis_role(s.kind, s.role) for s in mine}
        rates: dict[Role, float] = {
            role: float(
                self.config.bar_rate_hz if role == "bar_velocity" else self.config.imu_rate_hz
            )
            for role in roles.values()
        }
        stored = self.session.athletes.get(sensor.athlete)
        if stored is None:  # paired while the session runs: it joins the session
            stored = self._athlete_settings(sensor.athlete)
            try:
                self.store.add_athlete(self.session.id, sensor.athlete, stored)
            except SensorhubError as exc:
                self._complain("store", f"{sensor.athlete} not recorded in the session: {exc}")
            self.session.athletes[sensor.athlete] = stored
        settings = AnalysisSettings.from_stored(stored, live_rate_hz=self.config.live_rate_hz)
        calibration = None
        if "pelvis" in rates:
            pelvis = next(s for s in mine if roles[s.address] == "pelvis")
            calibration = _stored_calibration(pelvis)
            if calibration is None:
                log.warning(
                    "%s: no neutral pelvis from pairing; hold neutral for %g s now",
                    sensor.athlete,
                    NEUTRAL_HOLD_S,
                )
        self._emit(
            pipeline.add_athlete(
                sensor.athlete,
                settings,
                rates,
                calibration=calibration,
                neutral_from=time.monotonic(),  # the samples' clock is the hub's
            )
        )
        athlete = _Athlete(
            sensor.athlete,
            pipeline.analyzers[sensor.athlete],
            roles,
            keeps_axis=calibration is not None,
        )
        self._athletes[sensor.athlete] = athlete
        return athlete, pipeline

    def _athlete_settings(self, name: str, exercise: str | None = None) -> dict[str, Any]:
        """What the analysis of one athlete runs with (stored with the session for replay)."""
        configured = self.config.athlete(name)
        return {
            "exercise": exercise or configured.exercise,
            "load_kg": self._loads.get(name, configured.load_kg),
            "set_gap_s": self.config.set_gap_s,
            "velocity_loss_alert_pct": self.config.velocity_loss_alert_pct,
        }

    def _on_radio(self, radio: Radio) -> None:
        """Say on the hub status whether the radio is there (the links say the rest)."""
        self.publisher.set_hub_info(**_radio_info(radio))

    def _on_status(self, status: SensorStatus) -> None:
        record = sensor_status_record(status)
        self.publisher.publish_sensor_status(record)
        if self.view is not None:
            self.view.on_sensor(record)

    # Events out -------------------------------------------------------------------------

    def _emit(self, records: list[Record], received_at: float = 0.0) -> None:
        """Records of the session's analysis to the store, the broker and the view."""
        session = self.session
        for record in records:
            if self._trace is not None:
                self._trace(record, received_at)
            if session is not None and record["type"] in {"rep", "set", "alert"}:
                try:
                    self.store.add_record(session.id, record)
                except SensorhubError as exc:
                    self._complain("store", f"cannot record a {record['type']}: {exc}")
            try:
                self.publisher.publish_record(record)
            except SensorhubError as exc:  # the outbox's disk is full or gone
                self._complain("publish", f"cannot publish a {record['type']}: {exc}")
            if self.view is not None:
                self.view.on_record(record)

    def _storage_problem(self) -> dict[str, Any] | None:
        """The store's and the outbox's disk trouble as one ``storage`` problem, or None.

        Both live in the state directory, so one full disk is one problem; its counts say
        what waits in memory and what was let go (schema ``hub_status``).
        """
        store = self.store.problem
        mqtt = self.publisher.stats
        if store is None and mqtt["outbox_problem"] is None:
            return None
        held = store or {}
        shown = self._storage_shown
        return {
            "message": held.get("message", mqtt["outbox_problem"]),
            "since": shown["since"] if shown is not None else iso(time.time()),
            **{key: held.get(key, 0) for key in _STORE_COUNTS},
            "mqtt_held": mqtt["queued_in_memory"],
            "mqtt_dropped": mqtt["dropped_from_memory"],
        }

    def _show_storage_problem(self, now: float) -> None:
        """State a ``storage`` problem on the hub status while a disk refuses writes.

        At once when it begins, ends or changes its message; its counts at most every
        :data:`STATUS_EVERY_S` (the status is retained: one per tick would flood).
        """
        problem, shown = self._storage_problem(), self._storage_shown
        if problem == shown:
            return
        news = problem is None or shown is None or problem["message"] != shown["message"]
        if not news and now - self._storage_shown_at < STATUS_EVERY_S:
            return
        self._storage_shown, self._storage_shown_at = problem, now
        self.publisher.set_hub_info(problems={} if problem is None else {"storage": problem})

    def _complain(self, what: str, message: str, *, trace: bool = False) -> None:
        """Log a failure that repeats with every batch once, then at most every 10 s."""
        now = time.monotonic()
        if now - self._complained.get(what, -math.inf) < COMPLAIN_EVERY_S:
            return
        self._complained[what] = now
        if trace:
            log.exception(message)
        else:
            log.error(message)

    # Commands ---------------------------------------------------------------------------

    async def handle_command(self, command: Command) -> dict[str, Any]:
        """Carry out one validated command; raise CommandError when it cannot be done."""
        args = command.args
        if command.name == "start_session":
            info = self.start_session(
                note=args.get("note", ""),
                exercise=args.get("exercise"),
                athlete=args.get("athlete"),
            )
            return {"session_id": info.id, "athletes": sorted(info.athletes)}
        if command.name == "stop_session":
            info = self.stop_session()
            return {"session_id": info.id, "sets": info.sets, "reps": info.reps}
        if command.name == "set_load":
            return self.set_load(args["athlete"], float(args["load_kg"]))
        if command.name == "pair":
            sensor = await self.hub.pair(
                args["address"],
                role=args["role"],
                athlete=args["athlete"],
                name=args.get("name", ""),
            )
            return {"address": sensor.address, "role": sensor.role, "athlete": sensor.athlete}
        if command.name == "forget":
            removed = await self.hub.forget(args["address"])
            self.publisher.forget_sensor(removed.address)
            return {"address": removed.address}
        if command.name == "calibrate":
            return self.calibrate(args["athlete"])
        raise CommandError(f"unknown command {command.name!r}")

    def set_load(self, athlete: str, load_kg: float) -> dict[str, Any]:
        """The load on the athlete's bar from the next rep on.

        The athlete is one of the session's, or one with a registered sensor or settings
        in the configuration (the load then counts from when they join a session). A
        refused change changes nothing: every check, and the store, come first.
        """
        session = self.session
        in_session = session is not None and athlete in session.athletes
        if not in_session:
            known = self.known_athletes()
            if athlete not in known:
                raise CommandError(
                    f"no athlete {athlete!r}: "
                    + (f"the athletes are {', '.join(known)}" if known else "there are none yet")
                    + "; an athlete comes with a paired sensor (pair) or a configured section"
                )
        if session is not None and in_session:
            self.store.set_load(session.id, athlete, load_kg)
            session.athletes[athlete]["load_kg"] = load_kg
        self._loads[athlete] = load_kg
        if (running := self._athletes.get(athlete)) is not None:
            running.analyzer.set_load(load_kg)
        return {"athlete": athlete, "load_kg": load_kg}

    def known_athletes(self) -> list[str]:
        """Everyone a command may name: in the session, with a registered sensor, configured."""
        names = {s.athlete for s in self.registry.load().values()} | set(self.config.athletes)
        if self.session is not None:
            names |= set(self.session.athletes)
        return sorted(names)

    def calibrate(self, athlete: str) -> dict[str, Any]:
        """Measure the athlete's neutral pelvis again, from half a second from now."""
        running = self._athletes.get(athlete)
        if running is None:
            raise CommandError(
                f"{athlete!r} has no running analysis: pair a pelvis sensor and start a session"
            )
        try:
            running.analyzer.recalibrate_tilt(neutral_window(time.monotonic()))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        running.keeps_axis = False  # the registry keeps pairing's neutral, not this one
        return {"athlete": athlete, "hold_s": NEUTRAL_HOLD_S, "starts_in_s": NEUTRAL_DELAY_S}


def _stored_calibration(sensor: RegisteredSensor) -> TiltCalibration | None:
    try:
        return stored_calibration(sensor.calibration)
    except ValueError as exc:
        log.warning("%s: stored calibration unusable (%s); pair again", sensor.label, exc)
        return None


def state_paths(state_dir: Path) -> dict[str, Path]:
    """Where the service keeps its files, for messages to people."""
    return {
        "registry": state_dir / "sensors.json",
        "sessions": SessionStore.path_in(state_dir),
        "outbox": state_dir / "outbox.db",
    }


def freeze_startup_heap() -> None:
    """Keep what start-up built (modules, Bumble, the service) out of full GC passes.

    Python's oldest-generation collection walks every tracked object; with Bumble, numpy
    and the service loaded that took ~40 ms, a stall of the event loop that showed in
    the latency tail. Called once the service runs, in a process that is the service
    (``sensorhub run``, ``sensorhub demo``): garbage is collected first, and what is
    left is long-lived by then.
    """
    gc.collect()
    gc.freeze()


_STORE_COUNTS: Final = ("held_events", "held_frames", "dropped_events", "dropped_frames")
"""The session store's counts in a ``storage`` problem (schema ``hub_status``)."""


def _radio_info(radio: Radio) -> dict[str, Any]:
    """The hub status's radio fields: ``radio`` (ready or lost) and why it is lost."""
    return {"radio": str(radio.state), "radio_error": radio.lost_reason}


def _session_record(
    event: str, session_id: int, athletes: Iterable[str], sets: int, reps: int
) -> Record:
    """A session event (``started``, ``stopped``, ``interrupted``) as published now."""
    t = time.time()
    return {
        "type": "session",
        "ts": iso(t),
        "t": round(t, 3),
        "event": event,
        "session_id": session_id,
        "athletes": sorted(athletes),
        "sets": sets,
        "reps": reps,
    }
