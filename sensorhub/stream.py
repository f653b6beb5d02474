"""What a sensor link hands the rest of the hub: batches of samples and its status.

These types belong to no radio: the session store, the records and the pipeline name
them without importing the Bluetooth stack (:mod:`sensorhub.ble.link` makes them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LinkState", "SensorBatch", "SensorStatus"]


class LinkState(enum.StrEnum):
    """Where a link is in its life."""

    SEARCHING = "searching"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SensorBatch:
    """Samples from one data frame, on the hub's clock.

    ``t`` is hub time (s, monotonic) of each sample, shape (n,). IMU batches carry
    ``accel`` (n, 3) m/s² and ``gyro`` (n, 3) rad/s in the sensor frame; bar-velocity
    batches carry ``position`` (n,) m and ``velocity`` (n,) m/s.
    """

    address: str
    t: npt.NDArray[np.float64]
    accel: npt.NDArray[np.float64] | None = None
    gyro: npt.NDArray[np.float64] | None = None
    position: npt.NDArray[np.float64] | None = None
    velocity: npt.NDArray[np.float64] | None = None
    lost_before: int = 0
    """Samples lost just before this batch (0 when it follows on exactly)."""
    frame: bytes = b""
    """The data frame as it came off the radio, for the session store (re-analysis)."""
    received_at: float = 0.0
    """Hub time (s, monotonic) its notification arrived: where latency is measured from."""


@dataclass(frozen=True, slots=True)
class SensorStatus:
    """A link's state, for status topics and views; sent on every change and every few seconds."""

    address: str
    role: str
    athlete: str
    state: LinkState
    battery_pct: int | None
    rssi: int | None
    sample_rate_hz: float
    frames_received: int
    samples_received: int
    frames_lost: int
    samples_lost: int
    frames_dropped_by_hub: int
    corrupt_frames: int
    reconnects: int
    clock_drift_ppm: float | None
    last_error: str | None
