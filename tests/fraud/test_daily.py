"""Per-day series: what a scaled register moves and keeps, and how little is stored."""

from __future__ import annotations

import numpy as np

from meterseal.fraud.daily import Daily, daily
from meterseal.fraud.days import summarise
from meterseal.fraud.fleet import Labelled
from meterseal.fraud.pipeline import Analysis
from meterseal.fraud.som import ShapeMap


def _day(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = np.arange(96) / 4
    shape = 0.05 + 0.3 * np.exp(-((hours - 19) ** 2) / 4) + 0.1 * np.exp(-((hours - 7) ** 2))
    return shape * np.exp(0.2 * rng.standard_normal(96))


def test_a_scaled_register_moves_the_log_level_and_keeps_the_spread() -> None:
    days = np.stack([_day(s) for s in range(4)])
    scaled = days.copy()
    scaled[2:] *= 0.6
    holiday = days.copy()
    holiday[2:] = np.minimum(days[2:], np.quantile(days[2:], 0.25, axis=1, keepdims=True))
    s = summarise(np.stack([days, scaled, holiday]))
    np.testing.assert_allclose(s.log_level[1, 2:] - s.log_level[0, 2:], np.log(0.6), atol=0.06)
    np.testing.assert_allclose(s.log_spread[1], s.log_spread[0], atol=0.06)
    assert (s.log_spread[2, 2:] < s.log_spread[0, 2:] - 0.3).all()  # an absence narrows it


def test_the_series_are_compact_copies(small_fleet: Labelled, small_analysis: Analysis) -> None:
    smap: ShapeMap = small_analysis.shape_map
    part = daily(small_fleet.data.take(slice(0, 40)), smap)
    for name in ("total", "base", "log_level", "corr", "hours", "current"):
        array = getattr(part, name)
        assert array.dtype == np.float32, name
        assert array.base is None, name  # not a view keeping a chunk's readings alive
    both = Daily.concat([part, daily(small_fleet.data.take(slice(40, 50)), smap)])
    assert both.total.shape == (50, small_fleet.data.periods)
    np.testing.assert_array_equal(both.take(slice(0, 40)).hours, part.hours)
