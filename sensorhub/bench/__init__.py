"""The performance benchmark: pipeline throughput, event latency, and the hub at scale.

Three measurements, taken side by side in one run so that their ratios hold whatever
else the machine is doing:

- :mod:`~sensorhub.bench.pipeline`: IMU samples per second per core from frame bytes to
  records, against imufusion's AHRS alone on the same samples, and
  :mod:`~sensorhub.bench.breakdown`: what each part of it costs per frame;
- :mod:`~sensorhub.bench.latency`: notification arrival at the hub to the event at a
  subscriber of a real broker, p50 and p99;
- :mod:`~sensorhub.bench.scale`: the hub process with 1, 10, 40 … sensors at 200 Hz, its
  CPU and RSS, and RSS over a soak.

:func:`~sensorhub.bench.runner.run_bench` runs them and returns one JSON-able object (see
:mod:`~sensorhub.bench.report` for its keys and the targets).
"""

from __future__ import annotations

from typing import Final

__all__ = ["PARTS"]

PARTS: Final = ("pipeline", "latency", "scale")
"""The parts ``sensorhub bench --only`` may name (this package imports nothing heavy)."""
