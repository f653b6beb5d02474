"""A sensor that lost its bond with the hub: the hub says so, waits, and pairing again
brings the sensor back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.radio import VirtualRadio
from firmware_protocol.virtual.scenario import Scenario
from sensorhub.ble.link import BOND_LOST_RETRY_S
from sensorhub.ble.radio import Radio
from sensorhub.errors import PairingError
from sensorhub.hub import Hub
from sensorhub.pairing import pair_sensor
from sensorhub.registry import SensorRegistry
from sensorhub.stream import LinkState
from tests.test_hub_ble import Batches, firmware, wait_for


async def test_a_sensor_reset_is_named_backed_off_and_pairing_again_brings_it_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    air = VirtualRadio()
    registry = SensorRegistry(tmp_path / "sensors.json")
    async with Emulator(Scenario.preset("hip_thrust"), seed=31, radio=air) as athlete:
        bar = firmware(athlete, "bar")
        batches = Batches()
        async with Radio.on_virtual_radio(air, state_dir=tmp_path) as radio:
            await pair_sensor(
                radio, registry, bar.address, role="bar", athlete="Ada Lovelace", calibrate=False
            )
            async with Hub(radio, registry, on_batch=batches) as hub:
                await wait_for(lambda: batches.samples(bar.address) > 200, 10, "bar data")
                caplog.set_level(logging.INFO, logger="sensorhub")
                await bar.reset_bonds()
                link = hub.links[bar.address]
                await wait_for(
                    lambda: "no longer has this hub's bond" in (link.last_error or ""),
                    10,
                    "the lost bond named",
                )
                # It waits for a new pairing, not hammering the sensor: no new attempt
                # within seconds, and the warning said once, with what to run.
                tries = bar.counters.connections
                await asyncio.sleep(3.0)
                assert link.state is LinkState.BACKING_OFF
                assert bar.counters.connections == tries
                assert BOND_LOST_RETRY_S >= 30
                warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
                assert len(warnings) == 1, warnings
                assert "press its button and pair it again" in warnings[0].getMessage()
                assert (
                    f"sensorhub pair {bar.address} --role bar --athlete 'Ada Lovelace'"
                    in warnings[0].getMessage()
                )
                # The reset sensor is in pairing mode: pairing again replaces the stale
                # bond, and the hub streams from it at once (not after the back-off).
                lines: list[str] = []
                await hub.pair(
                    bar.address,
                    role="bar",
                    athlete="Ada Lovelace",
                    calibrate=False,
                    progress=lines.append,
                )
                assert any("lost its old bond" in line for line in lines), lines
                before = batches.samples(bar.address)
                await wait_for(
                    lambda: batches.samples(bar.address) > before + 200, 10, "bar data again"
                )
                assert hub.links[bar.address].state is LinkState.STREAMING


async def test_pairing_a_sensor_bonded_elsewhere_says_to_put_it_in_pairing_mode(
    tmp_path: Path,
) -> None:
    air = VirtualRadio()
    async with Emulator(Scenario.preset("hip_thrust"), seed=33, radio=air) as athlete:
        bar = firmware(athlete, "bar")
        # This hub bonds first; then the sensor is reset and another hub takes it.
        async with Radio.on_virtual_radio(air, state_dir=tmp_path / "ours") as radio:
            ours = SensorRegistry(tmp_path / "ours" / "sensors.json")
            await pair_sensor(radio, ours, bar.address, role="bar", athlete="Ada", calibrate=False)
        await bar.reset_bonds()
        async with Radio.on_virtual_radio(air, state_dir=tmp_path / "theirs") as radio:
            theirs = SensorRegistry(tmp_path / "theirs" / "sensors.json")
            await pair_sensor(radio, theirs, bar.address, role="bar", athlete="Bo", calibrate=False)
        assert not bar.pairing_mode
        async with Radio.on_virtual_radio(air, state_dir=tmp_path / "ours") as radio:
            with pytest.raises(PairingError, match="not in pairing mode"):
                await pair_sensor(
                    radio, ours, bar.address, role="bar", athlete="Ada", calibrate=False
                )
