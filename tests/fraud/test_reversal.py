"""Reversed days against the customer's own days: found from their onset, and only them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud.reversal import profile_mirror, reversal_series, reversal_step
from meterseal.fraud.som import zcurves

HOURS = np.arange(24)
# An evening peak, a smaller morning one, a night trough: a household's day.
SHAPE = 0.3 + np.exp(-((HOURS - 19) ** 2) / 6) + 0.5 * np.exp(-((HOURS - 7) ** 2) / 3)


def _days(seed: int, days: int = 30, noise: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = np.exp(0.15 * rng.standard_normal((days, 1)))
    return SHAPE[None, :] * level * np.exp(noise * rng.standard_normal((days, 24)))


def _step(*customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z, usable = zcurves(np.stack(customers))
    step = reversal_step(z, usable)
    return step.t, step.onset


def test_reversed_days_are_found_from_their_onset() -> None:
    honest = _days(1)
    thief = honest.copy()
    thief[18:] = thief[18:, ::-1]
    t, onset = _step(honest, thief)
    assert t[1] > 10
    assert abs(int(onset[1]) - 18) <= 1
    assert t[0] < 2


def test_a_few_reversed_days_at_the_end_still_count() -> None:
    thief = _days(2)
    thief[25:] = thief[25:, ::-1]  # the last five days of the window
    t, onset = _step(thief)
    assert t[0] > 5
    assert onset[0] >= 24


def test_a_new_evening_appliance_is_no_reversal() -> None:
    changed = _days(3)
    changed[12:, 20:23] += 3.0  # a big new load every evening: the shape changes, no reversal
    t, _ = _step(changed)
    assert t[0] < 2


def test_honest_days_score_below_zero_and_reversed_ones_above() -> None:
    days = _days(4)
    days[20:] = days[20:, ::-1]
    z, usable = zcurves(days[None])
    r = reversal_series(z, usable)[0, 20 - 1]  # the series of an onset on day 20
    assert (r[:20] < 0).all()
    assert (r[20:] > 0).all()


def test_flat_and_missing_days_are_left_out() -> None:
    days = _days(5)
    days[3] = 1.0  # flat: no shape to compare
    usable = np.ones((1, 30), bool)
    usable[0, 7] = False  # missing
    z, flat_ok = zcurves(days[None])
    r = reversal_series(z, usable & flat_ok)
    assert np.isnan(r[0, :, 3]).all()
    assert np.isnan(r[0, :, 7]).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_a_household_reversed_all_along_shows_no_onset(seed: int, scale: float) -> None:
    """No change inside the window, whatever the day's shape or size: nothing to find."""
    days = _days(seed)[:, ::-1] * scale
    t, _ = _step(days)
    assert t[0] < 3


def _profile(*customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hours = np.stack(customers)
    step = profile_mirror(np.nan_to_num(hours), ~np.isnan(hours).all(axis=2))
    return step.t, step.onset


def test_an_irregular_household_reversed_shows_in_its_profile() -> None:
    """Days far noisier than their rhythm: one day says little, their average says it."""
    honest = _days(26, days=60, noise=0.8)
    thief = honest.copy()
    thief[30:] = thief[30:, ::-1]
    t, onset = _profile(honest, thief)
    assert t[1] > 4
    assert abs(int(onset[1]) - 30) <= 2
    assert t[0] < 0


def test_a_new_routine_changes_the_profile_without_mirroring_it() -> None:
    changed = _days(7, days=60)
    changed[30:, 20:23] += 3.0  # a big new evening load
    moved = _days(8, days=60)
    moved[30:] = np.roll(moved[30:], 3, axis=1)  # the day three hours later (a new job)
    t, _ = _profile(changed, moved)
    assert (t < 0).all()


def test_a_reversal_that_stops_halfway_is_not_lasting() -> None:
    days = _days(9, days=60)
    days[30:45] = days[30:45, ::-1]  # reversed for a fortnight, then as before
    t, _ = _profile(days)
    assert t[0] < 0


def test_the_profile_is_judged_on_the_customers_own_days() -> None:
    early = np.full((90, 24), np.nan)
    early[3:53] = _days(10, days=50)
    early[28:53] = early[28:53, ::-1]  # its readings stop 37 days before the window ends
    late = np.full((90, 24), np.nan)
    late[45:] = _days(11, days=45)
    late[70:] = late[70:, ::-1]
    short = np.full((90, 24), np.nan)
    short[:8] = _days(12, days=8)  # too few days for a split (5 before, 2 in each half after)
    t, onset = _profile(early, late, short)
    assert (t[:2] > 5).all()
    assert abs(int(onset[0]) - 28) <= 2
    assert abs(int(onset[1]) - 70) <= 2
    assert t[2] == 0.0
    assert onset[2] == -1


def test_daily_totals_hold_no_profile() -> None:
    days = _days(13, days=60)
    days[30:] = days[30:, ::-1]
    t, onset = _profile(days.sum(axis=1, keepdims=True))
    assert t[0] == 0.0
    assert onset[0] == -1


def test_a_short_window_is_tested_on_a_few_days_against_a_higher_margin() -> None:
    thief = _days(14, days=14)
    thief[7:] = thief[7:, ::-1]  # a fortnight of readings, reversed from its second week
    honest = _days(15, days=14)
    t, onset = _profile(thief, honest)
    assert t[0] > 2
    assert abs(int(onset[0]) - 7) <= 2
    assert t[1] < 0
