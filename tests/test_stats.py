"""The analysis's median and quantile are numpy's, to the bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensorhub.analysis._stats import median, quantile


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def samples() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for trial in range(1500):
        n = int(rng.integers(1, 300))
        x = [
            rng.normal(0.0, 1.0, n),
            np.round(rng.normal(0.0, 1.0, n), 1),  # ties
            rng.exponential(0.02, n),  # spreads and floors, as the analysis has them
            np.full(n, 0.3),
        ][trial % 4]
        if trial % 37 == 0:
            x[rng.integers(n)] = math.nan
        out.append(x)
    return [*out, np.empty(0)]


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")
def test_median_and_quantile_are_numpys_to_the_bit() -> None:
    rng = np.random.default_rng(1)
    for x in samples():
        assert same(median(x), float(np.median(x))), x
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, float(rng.random())):
            if len(x) == 0:
                assert math.isnan(quantile(x, q))  # numpy raises on an empty array
                continue
            assert same(quantile(x, q), float(np.quantile(x, q))), (x, q)
