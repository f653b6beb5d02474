"""The reference firmware: virtual sensors that speak the protocol over a Bumble radio.

The firmware (:class:`VirtualSensor`) is driven by motion models with ground truth
(:class:`Scenario`, :class:`Trajectory`) through datasheet-grade sensor error models;
:class:`Emulator` wires them together for one scenario, on a :class:`VirtualRadio` that
hubs reach in-process or over HCI-over-TCP.
"""
