"""A drifting register, seen week by week in the levels a customer's readings sit at."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud import changepoint
from meterseal.fraud.level_drift import (
    MIN_BEFORE,
    WEEK,
    drift_of_levels,
    level_changes,
)
from meterseal.fraud.level_shift import histograms, level_drop
from tests.fraud.conftest import household

SLOTS = 96  # the households of `household`: 15-minute readings


def drifted_levels(readings: np.ndarray) -> changepoint.Step:
    """The level drift as the fraud job computes it (`level_changes`, one histogram pass)."""
    return level_changes(readings)[1]


def drifting(readings: np.ndarray, onset: int, final: float) -> np.ndarray:
    """The readings with a register losing a share growing to `final` by the last day."""
    out = readings.copy()
    days = out.shape[1] - onset
    out[:, onset:] *= (1.0 - np.linspace(0.0, final, days + 1)[1:])[None, :, None]
    return out


def test_a_drifting_register_is_found_from_its_onset() -> None:
    readings = household(80, np.random.default_rng(1))
    honest = drifted_levels(readings)
    step = drifted_levels(drifting(readings, 35, 0.5))
    assert step.t[0] > 5.0
    assert honest.t[0] < 1.0
    assert abs(step.onset[0] - 35) <= WEEK
    assert abs(step.delta[0] - np.log(1 / 0.5)) < 0.25


def test_a_change_of_habits_is_no_drift() -> None:
    rng = np.random.default_rng(2)
    less = household(80, rng)
    # The water heater runs less and less (a season): the day's energy falls by half,
    # but every pile stays where it was.
    for day in range(35, 80):
        share = 0.15 * (1.0 - 0.7 * (day - 34) / 45)
        less[:, day] = household(1, rng, heater_share=share)[:, 0]
    energy_ratio = less[:, -10:].sum() / less[:, :10].sum()
    assert energy_ratio < 0.7
    assert drifted_levels(less).t[0] < 1.0


def test_a_dip_that_recovers_is_no_drift() -> None:
    rng = np.random.default_rng(3)
    readings = household(80, rng)
    readings[:, 35:60] *= 0.6  # a month at a lower level, then back: the last weeks are up
    assert drifted_levels(readings).t[0] < 1.0


def test_each_customer_is_judged_on_its_own_days() -> None:
    rng = np.random.default_rng(4)
    early = np.full((1, 120, SLOTS), np.nan)
    early[:, 5:75] = drifting(household(70, rng), 30, 0.5)  # stops 45 days before the end
    late = np.full((1, 120, SLOTS), np.nan)
    late[:, 50:] = drifting(household(70, rng), 30, 0.5)  # starts 50 days after the first
    short = np.full((1, 120, SLOTS), np.nan)
    days = MIN_BEFORE + 3 * WEEK - 1  # a day short of 14 before and 3 weeks after
    short[:, :days] = drifting(household(days, rng), MIN_BEFORE - 1, 0.5)
    step = drifted_levels(np.concatenate([early, late, short]))
    assert (step.t[:2] > 5.0).all()
    assert abs(step.onset[0] - 35) <= WEEK
    assert abs(step.onset[1] - 80) <= WEEK
    assert step.t[2] == 0.0
    assert step.onset[2] == -1


def test_coarse_readings_hold_no_levels() -> None:
    daily = drifting(household(80, np.random.default_rng(5)), 35, 0.5).sum(axis=2, keepdims=True)
    step = drifted_levels(daily)
    assert step.t[0] == 0.0
    assert step.onset[0] == -1


@settings(max_examples=20, deadline=None)
@given(st.floats(min_value=0.01, max_value=100.0), st.integers(min_value=0, max_value=2**16))
def test_the_customers_own_scale_does_not_matter(scale: float, seed: int) -> None:
    readings = drifting(household(60, np.random.default_rng(seed)), 25, 0.4)
    plain = drift_of_levels(histograms(readings))
    scaled = drift_of_levels(histograms(readings * scale))
    np.testing.assert_allclose(scaled.t, plain.t, atol=1e-6)
    np.testing.assert_array_equal(scaled.onset, plain.onset)


def test_one_pass_of_histograms_gives_both_level_changes() -> None:
    readings = drifting(household(80, np.random.default_rng(6)), 35, 0.5)
    shift, drift = level_changes(readings)
    np.testing.assert_array_equal(drift.t, drift_of_levels(histograms(readings)).t)
    np.testing.assert_array_equal(shift.t, level_drop(histograms(readings)).t)
    coarse = level_changes(readings.sum(axis=2, keepdims=True))
    assert coarse[0].onset[0] == coarse[1].onset[0] == -1


def test_the_shortest_window_tested_is_14_days_and_3_weeks() -> None:
    rng = np.random.default_rng(7)
    days = MIN_BEFORE + 3 * WEEK
    short = drifting(household(days - 1, rng), MIN_BEFORE - 1, 0.5)
    enough = drifting(household(days, rng), MIN_BEFORE, 0.5)
    assert drifted_levels(short).t[0] == 0.0
    assert drifted_levels(enough).t[0] > 5.0


def test_a_drift_that_recovered_in_its_last_days_is_no_drift() -> None:
    """The last week tested ends on the customer's own last day, whatever its length: a
    register back for most of that week (4 to 6 days) ends the drift."""
    for tail in range((WEEK + 1) // 2, WEEK):
        readings = household(MIN_BEFORE + 3 * WEEK + tail, np.random.default_rng(8))
        drifted = drifting(readings[:, : MIN_BEFORE + 3 * WEEK], MIN_BEFORE, 0.6)
        readings[:, : MIN_BEFORE + 3 * WEEK] = drifted  # the register back for the last days
        assert drifted_levels(readings).t[0] < 1.0, tail
