"""Bluetooth: the bleak-facing side of the hub (radio choice, links, clocks, loss accounting)."""
