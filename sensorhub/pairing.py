"""Discovery and pairing: service-level operations the CLI and the running hub share.

:func:`discover` lists our sensors nearby; :func:`pair_sensor` bonds with one, makes it
blink so the person holding it can confirm which it is, calibrates it (gyro offset at
rest; for the pelvis, the neutral pose), and records it in the registry. Progress goes
to a callback as plain sentences, so a terminal, a log or an MQTT reply can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from firmware_protocol import (
    Calibrate,
    CalibrationKind,
    Command,
    FirmwareProtocolError,
    Identify,
    ImuDataFrame,
    SensorAdvertisement,
    SensorKind,
    StartStreaming,
    Status,
    StopStreaming,
    decode,
)
from firmware_protocol import gatt as uuids
from sensorhub.analysis.neutral import NEUTRAL_HOLD_S
from sensorhub.ble.control import ControlPoint
from sensorhub.ble.errors import bluetooth_errors, not_in_pairing_mode
from sensorhub.ble.link import disconnect
from sensorhub.ble.radio import Radio
from sensorhub.errors import (
    BondLostError,
    ConfigError,
    PairingError,
    SensorCommandError,
    SensorNotFoundError,
)
from sensorhub.registry import ROLES, RegisteredSensor, SensorRegistry

Progress = Callable[[str], None]
IDENTIFY_MS = 3000


@dataclass(frozen=True, slots=True)
class Sighting:
    """One of our sensors heard advertising."""

    address: str
    name: str | None
    kind: SensorKind
    battery_pct: int
    rssi: int
    pairing_mode: bool
    paired: bool
    """Registered with this hub (bonded and given a role)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``scan --json`` prints."""
        return {
            "address": self.address,
            "name": self.name,
            "kind": "imu" if self.kind is SensorKind.IMU else "bar_velocity",
            "battery": self.battery_pct,
            "rssi": self.rssi,
            "pairing_mode": self.pairing_mode,
            "paired": self.paired,
        }


def _sighting(device: BLEDevice, data: AdvertisementData, registered: set[str]) -> Sighting | None:
    try:
        advertisement = SensorAdvertisement.from_manufacturer_data(data.manufacturer_data)
    except FirmwareProtocolError:
        return None  # someone else's test device, or a sensor speaking another version
    if advertisement is None:
        return None
    return Sighting(
        address=device.address.upper(),
        name=data.local_name,
        kind=advertisement.kind,
        battery_pct=advertisement.battery_pct,
        rssi=data.rssi,
        pairing_mode=advertisement.pairing_mode,
        paired=device.address.upper() in registered,
    )


async def discover(
    radio: Radio,
    registry: SensorRegistry,
    duration: float,
    on_update: Callable[[dict[str, Sighting]], None] | None = None,
) -> dict[str, Sighting]:
    """Return our sensors heard within ``duration`` seconds, by address."""
    registered = set(registry.load())
    found: dict[str, Sighting] = {}

    def on_advertisement(device: BLEDevice, data: AdvertisementData) -> None:
        sighting = _sighting(device, data, registered)
        if sighting is not None:
            found[sighting.address] = sighting
            if on_update is not None:
                on_update(found)

    scanner = radio.scanner(on_advertisement)
    with bluetooth_errors(None, "scanning"):
        await scanner.start()
        await asyncio.sleep(duration)
        await scanner.stop()
    return found


async def find_sensor(radio: Radio, address: str, timeout: float) -> tuple[BLEDevice, Sighting]:
    """Wait until the sensor at ``address`` advertises; raise SensorNotFoundError if it does not."""
    wanted = address.upper()
    found: asyncio.Future[tuple[BLEDevice, Sighting]] = asyncio.get_running_loop().create_future()

    def on_advertisement(device: BLEDevice, data: AdvertisementData) -> None:
        if device.address.upper() == wanted and not found.done():
            sighting = _sighting(device, data, set())
            if sighting is not None:
                found.set_result((device, sighting))

    scanner = radio.scanner(on_advertisement)
    with bluetooth_errors(None, "scanning"):
        await scanner.start()
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            raise SensorNotFoundError(
                f"no sensorhub sensor advertised as {address} within {timeout:g} s: "
                "is it on, in range, and not connected to another hub?"
            ) from None
        finally:
            await scanner.stop()


async def pair_sensor(
    radio: Radio,
    registry: SensorRegistry,
    address: str,
    *,
    role: str,
    athlete: str,
    name: str = "",
    progress: Progress = lambda _line: None,
    find_timeout: float = 15.0,
    calibrate: bool = True,
) -> RegisteredSensor:
    """Bond with a sensor, identify it, calibrate it and register it; return the entry."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not athlete.strip():
        raise ConfigError("--athlete must name someone")
    progress(f"looking for {address}…")
    device, sighting = await find_sensor(radio, address, find_timeout)
    if role == "pelvis" and sighting.kind is not SensorKind.IMU:
        raise ConfigError("the pelvis role needs an IMU sensor, not a bar-velocity sensor")
    bonded = await radio.is_bonded(address)
    if not bonded and not sighting.pairing_mode:
        # It would refuse the bond: say so, and how to fix it, before trying.
        raise PairingError(not_in_pairing_mode(sighting.name or address))
    progress(f"found {sighting.name or address} ({sighting.kind.name.lower()}), connecting…")
    client = radio.client(device)
    doing = f"pairing with {address}"
    try:
        with bluetooth_errors(address, doing, PairingError):
            try:
                with bluetooth_errors(address, doing, PairingError):
                    async with radio.connect_lock:
                        await client.connect()
            except BondLostError:
                # We hold a bond the sensor no longer has (reset, or bonded elsewhere).
                if not sighting.pairing_mode:
                    raise PairingError(not_in_pairing_mode(sighting.name or address)) from None
                progress("the sensor has lost its old bond with this hub: bonding anew…")
                await radio.forget_bond(address)
                bonded = False
                async with radio.connect_lock:
                    await client.connect()
            if not bonded:
                progress("pairing (LE Secure Connections)…")
                await client.pair()  # refused out of pairing mode: PairingError says so
            control = ControlPoint(client, address)
            await control.start()
            await _checked(control, Identify(0, IDENTIFY_MS))
            progress(f"{sighting.name or address} is blinking: check it is the one you hold")
            calibration: dict[str, Any] | None = None
            if calibrate and sighting.kind is SensorKind.IMU:
                calibration = await _calibrate_imu(client, control, role, progress)
            elif calibrate:
                await _checked(
                    control, Calibrate(0, CalibrationKind.ZERO_POSITION), allow_busy=True
                )
    finally:
        await disconnect(client)
    entry = RegisteredSensor(
        address=address.upper(),
        kind="imu" if sighting.kind is SensorKind.IMU else "bar_velocity",
        role=role,
        athlete=athlete.strip(),
        name=name,
        calibration=calibration,
    )
    registry.put(entry)
    progress(f"registered {entry.label} ({entry.address})")
    return entry


async def _checked(control: ControlPoint, command: Command, *, allow_busy: bool = False) -> None:
    response = await control.send(command, check=False)
    if response.status == Status.OK or (allow_busy and response.status == Status.INVALID_STATE):
        return
    raise SensorCommandError(f"sensor refused {type(command).__name__}: status {response.status}")


async def _calibrate_imu(
    client: BleakClient, control: ControlPoint, role: str, progress: Progress
) -> dict[str, Any]:
    """Zero the gyro offset; for the pelvis, record gravity in the neutral pose."""
    progress("hold the sensor still: measuring the gyro offset…")
    for attempt in range(3):
        response = await control.send(Calibrate(0, CalibrationKind.GYRO_BIAS), check=False)
        if response.status == Status.OK:
            break
        if response.status != Status.INVALID_STATE or attempt == 2:
            raise SensorCommandError("the sensor could not measure its gyro offset (moving?)")
        progress("the sensor moved; hold it still…")
        await asyncio.sleep(1.0)
    calibration: dict[str, Any] = {"gyro_bias_zeroed": True}
    if role != "pelvis":
        return calibration
    progress(f"neutral pelvis: hold the neutral position still for {NEUTRAL_HOLD_S:g} s…")
    accel: list[np.ndarray] = []

    def on_data(_characteristic: object, data: bytearray) -> None:
        with contextlib.suppress(FirmwareProtocolError):
            frame = decode(bytes(data))
            if isinstance(frame, ImuDataFrame):
                accel.append(frame.accel)

    await client.start_notify(uuids.DATA_CHAR_UUID, on_data)
    await _checked(control, StartStreaming(0))
    await asyncio.sleep(NEUTRAL_HOLD_S)
    await _checked(control, StopStreaming(0))
    await client.stop_notify(uuids.DATA_CHAR_UUID)
    if not accel:
        raise SensorCommandError("no data arrived during the neutral hold")
    samples = np.concatenate(accel)
    gravity = samples.mean(axis=0)
    spread = float(np.linalg.norm(samples.std(axis=0)))
    if spread > 1.0:
        raise PairingError(
            f"the pelvis moved during the neutral hold (spread {spread:.2f} m/s²); pair again "
            "and hold still"
        )
    calibration["neutral_gravity_sensor"] = [round(float(v), 5) for v in gravity]
    calibration["neutral_samples"] = len(samples)
    calibration["neutral_at"] = time.time()
    progress("neutral pose recorded")
    return calibration
