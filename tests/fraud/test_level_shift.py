"""The levels a customer's readings sit at: moved by a register's factor, not by habits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud.level_shift import BIN, align, histograms, level_drop

SLOTS = 96


def household(days: int, rng: np.random.Generator, heater_share: float = 0.15) -> np.ndarray:
    """Readings (1, days, 96) in kWh at a few appliance levels: standby, a fridge cycling,
    a water heater running in a share of the slots, and a little noise."""
    standby = np.full((days, SLOTS), 0.02)
    fridge = 0.025 * (rng.random((days, SLOTS)) < 0.4)
    heater = 0.5 * (rng.random((days, SLOTS)) < heater_share)
    noise = rng.normal(1.0, 0.02, (days, SLOTS))
    out: np.ndarray = ((standby + fridge + heater) * noise)[None]
    return out


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
