"""The BLE delivery model: losses, bursts, jitter and repeats at the rates it states."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_protocol.virtual.delivery import DeliveryModel
from sensorhub.analysis.recording import Recording, regularise

LOSSY = DeliveryModel(
    rate_hz=100.0,
    clock_error=0.004,
    samples_per_packet=3,
    loss=0.01,
    burst_packets=4,
    stamps="arrival",
    jitter_s=0.002,
    repeat=0.005,
)


def test_losses_come_in_bursts_at_the_stated_rate() -> None:
    delivery = LOSSY.deliver(3600.0, np.random.default_rng(1))
    packets = delivery.t_sampled.size / LOSSY.samples_per_packet
    # Each packet starts a loss with probability `loss`, of 1-4 packets (2.5 on average).
    expected = LOSSY.loss * 2.5 * LOSSY.samples_per_packet * packets
    assert delivery.lost == pytest.approx(expected, rel=0.1)
    kept = np.unique(delivery.index)
    gaps = np.diff(kept)[np.diff(kept) > 1] - 1  # samples missing in a row
    assert set(np.unique(gaps)) <= {3 * k for k in range(1, 9)}  # whole packets, bursts
    assert gaps.max() >= 3 * 4  # some bursts are several packets long
    assert np.mean(gaps == 3) > 0.2  # and many a single one


def test_the_part_runs_off_its_nominal_rate() -> None:
    delivery = LOSSY.deliver(100.0, np.random.default_rng(2))
    spacing = np.diff(delivery.t_sampled)
    assert spacing == pytest.approx(1 / (100.0 * 1.004), rel=1e-9)


def test_arrival_stamps_jitter_and_repeat_without_reordering() -> None:
    delivery = LOSSY.deliver(3600.0, np.random.default_rng(3))
    again = delivery.index[1:] == delivery.index[:-1]
    assert again.sum() == delivery.repeated
    assert delivery.repeated == pytest.approx(
        LOSSY.repeat * np.unique(delivery.index).size, rel=0.1
    )
    first = np.r_[True, ~again]
    error = delivery.t[first] - delivery.t_sampled[delivery.index[first]]
    # 2 ms jitter, clipped at a quarter of the 10 ms spacing so samples keep their order.
    assert 0.0015 < np.std(error) < 0.002
    assert np.abs(error).max() <= 0.25 / (100.0 * 1.004) + 1e-12
    assert np.all(np.diff(delivery.t) >= 0)
    late = delivery.t[1:][again] - delivery.t[:-1][again]
    assert np.mean(late == 0) == pytest.approx(0.5, abs=0.1)  # at once, or a little later
    assert late.max() < 0.5 / 100.0


def test_the_sensors_own_stamps_are_its_sampling_instants() -> None:
    delivery = LOSSY.as_sensor_stamped.deliver(600.0, np.random.default_rng(4))
    assert np.array_equal(delivery.t, delivery.t_sampled[delivery.index])
    assert delivery.repeated == 0
    assert delivery.lost > 0


def test_same_seed_same_delivery() -> None:
    a = LOSSY.deliver(60.0, np.random.default_rng(5))
    b = LOSSY.deliver(60.0, np.random.default_rng(5))
    c = LOSSY.deliver(60.0, np.random.default_rng(6))
    assert np.array_equal(a.t, b.t)
    assert np.array_equal(a.index, b.index)
    assert not np.array_equal(a.t, c.t)
    assert DeliveryModel.random(50.0, np.random.default_rng(7), stamps="arrival") == (
        DeliveryModel.random(50.0, np.random.default_rng(7), stamps="arrival")
    )


def test_random_links_stay_in_their_ranges() -> None:
    rng = np.random.default_rng(8)
    for rate in (12.5, 25.0, 50.0, 100.0, 200.0):
        for _ in range(20):
            link = DeliveryModel.random(rate, rng, stamps="arrival")
            assert abs(link.clock_error) <= 0.005
            assert 5e-4 <= link.loss <= 2e-2
            assert 1 <= link.burst_packets <= 6
            assert 0.015 * rate - 1 <= link.samples_per_packet <= max(1, 0.05 * rate + 1)
            assert 0.5e-3 <= link.jitter_s <= 4e-3
            assert 0 <= link.repeat <= 0.01
        sensor = DeliveryModel.random(rate, rng, stamps="sensor")
        assert sensor.jitter_s == sensor.repeat == 0.0


def test_a_delivered_recording_regularises_back_to_its_rate() -> None:
    delivery = LOSSY.deliver(120.0, np.random.default_rng(9))
    signal = np.sin(2 * np.pi * 0.5 * delivery.t_sampled)
    values = np.repeat(signal[delivery.index, None], 3, axis=1)
    (segment,) = regularise(Recording(delivery.t, values, values))
    # Even at about the part's true rate (the lost samples' gaps count as time, so a
    # little under it), and the signal where it was in time.
    delivered = np.unique(delivery.index).size / 120.0
    assert 0.995 * delivered <= segment.rate_hz <= 100.0 * 1.004
    truth = np.sin(2 * np.pi * 0.5 * segment.t)
    assert np.abs(segment.accel[:, 0] - truth).max() < 0.05  # jitter costs a little


def test_bad_links_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match=r"DeliveryModel.loss = 0.9: allowed 0..0.5"):
        DeliveryModel(100.0, loss=0.9)
    with pytest.raises(ValueError, match="samples_per_packet"):
        DeliveryModel(100.0, samples_per_packet=0)
    with pytest.raises(ValueError, match="need stamps='arrival'"):
        DeliveryModel(100.0, jitter_s=0.001)
    with pytest.raises(ValueError, match="duration_s"):
        DeliveryModel(100.0).deliver(0.0, np.random.default_rng(0))
