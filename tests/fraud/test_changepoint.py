"""The lasting-step statistic: finds theft's onset, discounts dips that recover."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from meterseal.fraud import changepoint


def _noisy(days: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, days)


def test_a_lasting_drop_is_found_at_its_onset() -> None:
    y = _noisy(30, 1)
    y[17:] -= 0.8
    step = changepoint.drop(y[None, :], floor=0.05)
    assert step.onset[0] == 17
    assert step.t[0] > 8
    assert step.delta[0] > 0.6


def test_a_dip_that_recovers_scores_far_below_a_lasting_drop() -> None:
    lasting, dip = _noisy(30, 2), _noisy(30, 2)
    lasting[15:] -= 0.8
    dip[15:22] -= 0.8  # a holiday week, then back to normal
    steps = changepoint.drop(np.vstack([lasting, dip]), floor=0.05)
    assert steps.t[1] < steps.t[0] / 3


def test_a_rise_is_not_a_drop_but_is_a_change() -> None:
    y = _noisy(30, 3)
    y[12:] += 0.8
    assert changepoint.drop(y[None, :], floor=0.05).t[0] < 1
    either = changepoint.either(y[None, :], floor=0.05)
    assert either.t[0] > 8
    assert either.onset[0] == 12


def test_missing_days_and_empty_rows_are_handled() -> None:
    y = _noisy(30, 4)
    y[20:] -= 1.0
    y[[3, 8, 25]] = np.nan
    rows = np.vstack([y, np.full(30, np.nan), np.zeros(30)])
    step = changepoint.drop(rows, floor=0.05)
    assert step.onset[0] == 20
    assert step.t[1] == 0
    assert step.onset[1] == -1
    assert step.t[2] <= 0  # flat: nothing to find


def test_the_margin_takes_small_drops_out_of_the_evidence() -> None:
    y = _noisy(30, 5)
    y[15:] -= 0.08
    plain = changepoint.drop(y[None, :], floor=0.05)
    margin = changepoint.drop(y[None, :], floor=0.05, margin=0.1)
    assert margin.t[0] < plain.t[0]
    assert margin.t[0] < 1


@given(st.floats(-100, 100), st.integers(0, 1000))
def test_the_statistic_ignores_the_series_level(shift: float, seed: int) -> None:
    y = _noisy(25, seed)
    y[14:] -= 0.5
    a = changepoint.drop(y[None, :], floor=0.05)
    b = changepoint.drop(y[None, :] + shift, floor=0.05)
    assert a.onset[0] == b.onset[0]
    np.testing.assert_allclose(a.t, b.t, rtol=1e-6, atol=1e-6)


def test_a_step_that_does_not_reach_the_end_is_discounted() -> None:
    """The lasting rule looks at the window's last quarter too: an absence that covers most
    of both halves of the days after its start but ends six days before the end of the
    window is not a theft that goes on."""
    ending, lasting = _noisy(30, 6), _noisy(30, 6)
    ending[12:24] -= 0.8
    lasting[12:] -= 0.8
    steps = changepoint.drop(np.vstack([ending, lasting]), floor=0.05)
    assert steps.t[0] < steps.t[1] / 3


def test_mirror_counts_a_change_only_as_far_as_it_crosses_zero() -> None:
    """A reversal flips the series' sign; moving towards 0 (a day that merely matches its
    template less) is not one."""
    flipped, halfway = np.full((1, 29, 30), -1.0), np.full((1, 29, 30), -1.0)
    flipped[..., 15:] = 1.0
    halfway[..., 15:] = -0.4
    for y in (flipped, halfway):
        y += 0.1 * np.random.default_rng(7).standard_normal(y.shape)
    rise = {
        name: changepoint.split_drops(-y, floor=0.05, mirror=True).t[0]
        for name, y in (("flipped", flipped), ("halfway", halfway))
    }
    assert rise["flipped"] > 10
    assert rise["halfway"] <= 0
    plain = changepoint.split_drops(-halfway, floor=0.05).t[0]
    assert plain > 10  # without the mirror rule it would count


def test_split_drops_reads_each_split_its_own_series() -> None:
    y = np.tile(_noisy(30, 8), (1, 29, 1))
    y[0, 19, 20:] -= 1.0  # only the series of the split before day 20 steps there
    step = changepoint.split_drops(y, floor=0.05)
    assert step.onset[0] == 20
    assert step.t[0] > 8


def test_noise_is_pulled_towards_the_populations() -> None:
    rng = np.random.default_rng(9)
    y = rng.normal(0.0, 0.2, (200, 30))
    y[0] = rng.normal(0.0, 0.02, 30)  # a customer whose days happen to be very steady
    alone = changepoint.noise(y, 0.0, pooled=False)
    pooled = changepoint.noise(y, 0.0)
    assert alone[0] < 0.05
    assert alone[0] < pooled[0] < np.median(alone)
    np.testing.assert_allclose(pooled[1:].mean(), alone[1:].mean(), rtol=0.1)
    np.testing.assert_array_equal(changepoint.noise(y[:3], 0.0), alone[:3])  # too few rows


@given(
    st.integers(0, 1000),
    st.integers(0, 70),
    st.integers(0, 40),
    st.integers(8, 20),
    st.booleans(),
)
def test_each_series_is_judged_on_its_own_span(
    seed: int, before: int, after: int, onset: int, pooled: bool
) -> None:
    """Days without readings at either end (data that start late or stop early) change
    nothing: the statistic, the size and the onset (shifted by the gap) are the series'
    own, whatever the window of the others."""
    y = _noisy(30, seed)
    y[onset:] -= 0.6
    padded = np.full(before + 30 + after, np.nan)
    padded[before : before + 30] = y
    alone = changepoint._best(*changepoint._splits(y[None, :], 0.05, 5, 2, 0.0, pooled=pooled)[:2])
    shifted = changepoint._best(
        *changepoint._splits(padded[None, :], 0.05, 5, 2, 0.0, pooled=pooled)[:2]
    )
    np.testing.assert_allclose(shifted.t, alone.t, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(shifted.delta, alone.delta, rtol=1e-9, atol=1e-9)
    assert shifted.onset[0] == alone.onset[0] + before


def test_a_customer_starting_later_does_not_change_the_others() -> None:
    """A population sharing one start date, then the same with one customer who starts two
    months later and one who stops three weeks early: the first ones' statistics (noise
    pooled over the population: fewer than `MIN_POOLED` rows here) do not move, and the
    late and early customers' own lasting drops are found."""
    rng = np.random.default_rng(11)
    shared = rng.normal(0.0, 0.1, (20, 40))
    shared[:5, 25:] -= 0.8  # five thieves
    window = np.full((22, 100), np.nan)
    window[:20, :40] = shared
    window[20, 60:] = rng.normal(0.0, 0.1, 40)  # starts two months later
    window[20, 85:] -= 0.8
    window[21, :19] = rng.normal(0.0, 0.1, 19)  # stops three weeks early
    window[21, 10:19] -= 0.8
    alone = changepoint.drop(shared, floor=0.05)
    together = changepoint.drop(window, floor=0.05)
    np.testing.assert_allclose(together.t[:20], alone.t, rtol=1e-9)
    np.testing.assert_array_equal(together.onset[:20], alone.onset)
    assert (together.t[:5] > 8).all()
    assert together.onset[20] == 85
    assert together.t[20] > 8
    assert together.onset[21] == 10
    assert together.t[21] > 4
