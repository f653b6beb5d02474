"""sensorhub: Bluetooth LE motion sensors for barbell training.

Pairs with bar and pelvis sensors, detects every repetition, measures bar velocity and
pelvic tilt, publishes live metrics over MQTT and records every session for export.
"""

__version__ = "0.1.0"
