"""Feature series: what every neighbour did on a day is taken out, when there are neighbours."""

from __future__ import annotations

import numpy as np

from meterseal.fraud import features


def test_the_days_median_is_taken_out_only_where_enough_customers_have_a_value() -> None:
    """30 customers share days 0-19 with a common dip on day 10; one customer is alone on
    days 40-59 with a step of its own: the dip is the others' day median, the lone
    customer's days keep their step (their median would be the customer itself)."""
    rng = np.random.default_rng(3)
    y = np.full((31, 60), np.nan)
    y[:30, :20] = rng.normal(0.0, 0.05, (30, 20))
    y[:30, 10] -= 1.0
    y[30, 40:] = rng.normal(0.0, 0.05, 20)
    y[30, 50:] -= 1.0
    median = features.common(y, None)
    assert np.all(median[:, 10] < -0.9)
    assert np.all(np.abs(median[:, [5, 15]]) < 0.1)
    np.testing.assert_array_equal(median[:, 40:], 0.0)
    own = y[30] - median[30]
    assert own[50:].mean() - own[40:50].mean() < -0.9


def test_a_small_region_keeps_its_customers_changes() -> None:
    """A region of fewer than `MIN_PEERS` customers has no neighbourhood: nothing is taken
    out of its customers' days, while a large region's common day is."""
    rng = np.random.default_rng(4)
    y = rng.normal(0.0, 0.05, (40, 30))
    y[:, 15] += 1.0  # every customer: a cold day
    regions = ["big"] * (40 - features.MIN_PEERS + 1) + ["small"] * (features.MIN_PEERS - 1)
    median = features.common(y, regions)
    small = np.array(regions) == "small"
    np.testing.assert_array_equal(median[small], 0.0)
    assert np.all(median[~small, 15] > 0.9)
