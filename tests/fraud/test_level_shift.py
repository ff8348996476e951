"""The levels a customer's readings sit at: moved by a register's factor, not by habits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud.level_drift import level_changes
from meterseal.fraud.level_shift import BIN, BINS, align, histograms, level_drop
from tests.fraud.conftest import household

SLOTS = 96  # the households of `household`: 15-minute readings


def test_a_scaled_register_moves_every_pile_from_its_onset() -> None:
    readings = household(60, np.random.default_rng(1))
    readings[:, 30:] *= 0.6
    step = level_drop(histograms(readings))
    assert step.t[0] > 2.0
    assert abs(step.onset[0] - 30) <= 3
    assert abs(step.delta[0] - np.log(1 / 0.6)) <= 2 * BIN


def test_habits_that_change_the_energy_leave_the_piles_where_they_are() -> None:
    rng = np.random.default_rng(2)
    more = household(60, rng)
    more[:, 30:] = household(30, rng, heater_share=0.3)  # twice the heater: energy up
    less = household(60, rng)
    less[:, 30:] = household(30, rng, heater_share=0.05)  # a third of it: energy down 40 %
    step = level_drop(histograms(np.concatenate([more, less])))
    assert (step.t < 0.5).all()


def test_a_drifting_register_moves_the_piles_down_as_it_grows() -> None:
    readings = household(70, np.random.default_rng(3))
    share = np.linspace(0.0, 0.5, 41)[1:]
    readings[0, 30:] *= (1.0 - share)[:, None]
    assert level_drop(histograms(readings)).t[0] > 1.0


def test_each_customer_is_judged_on_its_own_days() -> None:
    rng = np.random.default_rng(4)
    early = np.full((1, 90, SLOTS), np.nan)
    early[:, 5:55] = household(50, rng)
    early[:, 30:55] *= 0.5  # stops 35 days before the others' last day
    late = np.full((1, 90, SLOTS), np.nan)
    late[:, 40:] = household(50, rng)
    short = np.full((1, 90, SLOTS), np.nan)
    short[:, :12] = household(12, rng)  # too few days for a split
    step = level_drop(histograms(np.concatenate([early, late, short])))
    assert step.t[0] > 2.0
    assert abs(step.onset[0] - 30) <= 3
    assert step.t[1] < 0.5
    assert step.t[2] == 0.0
    assert step.onset[2] == -1


@settings(max_examples=20, deadline=None)
@given(st.floats(min_value=0.01, max_value=100.0), st.integers(min_value=0, max_value=2**16))
def test_the_customers_own_scale_does_not_matter(scale: float, seed: int) -> None:
    readings = household(50, np.random.default_rng(seed))
    readings[:, 25:] *= 0.7
    plain = level_drop(histograms(readings))
    scaled = level_drop(histograms(readings * scale))
    np.testing.assert_allclose(scaled.t, plain.t, atol=1e-6)
    np.testing.assert_array_equal(scaled.onset, plain.onset)


def test_align_finds_the_shift_of_a_moved_histogram() -> None:
    h = np.zeros((1, 128))
    h[0, [40, 60, 61, 90]] = [5.0, 3.0, 3.0, 1.0]
    moved = np.roll(h, -6, axis=1)
    shift, match, gain = align(h, moved)
    assert shift[0] == -6 * BIN
    assert match[0] > 0.99
    assert gain[0] > 0.5


def test_a_drop_that_recovers_before_the_end_does_not_last() -> None:
    """Both halves of the days after the split must fall: the smaller drop counts."""
    readings = household(60, np.random.default_rng(5))
    readings[:, 30:45] *= 0.6  # back to the old levels for the last 15 days
    step = level_drop(histograms(readings))
    assert step.t[0] < 0.5


def _piles(days: int, *levels: tuple[int, float], width: float = 0.0) -> np.ndarray:
    """Histograms (1, days, BINS) of the same piles every day: (bin, count); Gaussian piles
    of sd `width` bins, or single bins at width 0."""
    out = np.zeros((1, days, BINS), np.float32)
    x = np.arange(BINS)
    for centre, count in levels:
        if width:
            shape = np.exp(-0.5 * ((x - centre) / width) ** 2)
            out[0] += (count * shape / shape.sum()).astype(np.float32)
        else:
            out[0, :, centre] += count
    return out


def test_a_shift_that_aligns_only_some_piles_counts_little() -> None:
    """One appliance replaced by a smaller one and another gone: the best shift lines up
    one pile of two (cosine 0.71), which is no register's factor."""
    hists = np.concatenate([_piles(20, (60, 50), (80, 50)), _piles(20, (50, 100))], axis=1)
    step = level_drop(hists)
    assert step.t[0] < 0.5
    # The same drop with both piles moved is a register's factor.
    moved = np.concatenate([_piles(20, (60, 50), (80, 50)), _piles(20, (50, 50), (70, 50))], 1)
    assert level_drop(moved).t[0] > 3.0


def test_a_shift_that_barely_improves_the_match_counts_little() -> None:
    """A broad histogram moved by a few bins matches almost as well unshifted: wobble."""
    hists = np.concatenate([_piles(20, (64, 1000), width=15), _piles(20, (61, 1000), width=15)], 1)
    assert level_drop(hists).t[0] < 0.5
    narrow = np.concatenate([_piles(20, (64, 1000), width=1), _piles(20, (61, 1000), width=1)], 1)
    assert level_drop(narrow).t[0] > 1.0


@pytest.mark.parametrize(("days", "found"), [(15, False), (16, True)])
def test_a_split_needs_sixteen_days_of_readings(days: int, found: bool) -> None:
    readings = household(days, np.random.default_rng(6))
    readings[:, 7:] *= 0.5
    step = level_drop(histograms(readings))
    assert bool(step.t[0] > 2.0) == found
    assert step.onset[0] == (7 if found else -1)


def test_customers_without_a_positive_reading_and_empty_chunks_are_quiet() -> None:
    """All-missing and all-zero customers are expected: no split, and no warning."""
    readings = np.concatenate(
        [
            np.full((1, 30, SLOTS), np.nan),
            np.zeros((1, 30, SLOTS)),
            household(30, np.random.default_rng(7)),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step = level_drop(histograms(readings))
        empty = level_drop(histograms(np.zeros((0, 30, SLOTS))))
    np.testing.assert_array_equal(step.t[:2], 0.0)
    np.testing.assert_array_equal(step.onset[:2], -1)
    assert empty.t.shape == empty.onset.shape == (0,)


def test_the_days_after_a_split_run_to_the_customers_own_last_day() -> None:
    """Data that stop at day 30 of 60: a split needs 8 of its own days after it, so a drop
    in the last 4 of them is too short to judge (not against the window's end, nor in
    another customer's splits)."""
    readings = np.full((1, 60, SLOTS), np.nan)
    readings[:, :30] = household(30, np.random.default_rng(8))
    readings[:, 26:30] *= 0.5
    # Beside a customer with all 60 days, whose later splits are tried in the same pass.
    others = household(60, np.random.default_rng(10))
    step = level_drop(histograms(np.concatenate([readings, others])))
    assert step.t[0] == 0.0
    assert step.onset[0] == -1


def test_the_days_before_a_split_are_counted_from_the_customers_own_first_day() -> None:
    """A customer whose readings start on day 40 with 3 unusual days (twice the levels):
    seven of its own days before any split, so those 3 days are never a baseline alone."""
    readings = np.full((1, 90, SLOTS), np.nan)
    readings[:, 40:] = household(50, np.random.default_rng(9))
    readings[:, 40:43] *= 2.0
    assert level_drop(histograms(readings)).t[0] < 0.5


def test_a_customer_starting_near_the_windows_end_beside_a_whole_one() -> None:
    """Its splits would lie past the window while the other's are still tried."""
    late = np.full((1, 60, SLOTS), np.nan)
    late[:, 50:] = household(10, np.random.default_rng(11))
    whole = household(60, np.random.default_rng(12))
    whole[:, 30:] *= 0.6
    step = level_drop(histograms(np.concatenate([late, whole])))
    assert step.t[0] == 0.0
    assert step.onset[0] == -1
    assert step.t[1] > 2.0


def test_days_without_readings_are_no_days_of_evidence() -> None:
    """Seven days before a split and eight after are days with readings: 3 days before a
    long gap are no baseline, and 2 lone days after one are no lasting drop."""
    early = np.full((1, 90, SLOTS), np.nan)
    early[:, :3] = household(3, np.random.default_rng(13)) * 1.5  # builders at work
    early[:, 40:] = household(50, np.random.default_rng(14))
    late = np.full((1, 60, SLOTS), np.nan)
    late[:, :41] = household(41, np.random.default_rng(15))
    late[:, [50, 59]] = household(2, np.random.default_rng(16)) * 0.6
    for readings in (early, late):
        step = level_drop(histograms(readings))
        assert step.t[0] == 0.0
        assert step.onset[0] == -1


def test_daily_totals_get_no_level_shift() -> None:
    # The SGCC layout: weeks of 7 daily totals. A season moves daily totals as a register's
    # factor does, and a daily total is no appliance's level: the detector stays silent.
    rng = np.random.default_rng(8)
    weeks = rng.gamma(4.0, 2.0, (2, 40, 7))
    weeks[0, 20:] *= 0.5
    silent, _ = level_changes(weeks)
    np.testing.assert_array_equal(silent.t, [0.0, 0.0])
    np.testing.assert_array_equal(silent.onset, [-1, -1])
    readings = household(60, np.random.default_rng(1))
    readings[:, 30:] *= 0.6
    found, direct = level_changes(readings)[0], level_drop(histograms(readings))
    np.testing.assert_array_equal(found.t, direct.t)
    assert found.t[0] > 2.0
