"""A drifting register, a household's own wander, and a holiday's rebound."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud import changepoint, drift
from meterseal.fraud.features import rebound


def _noisy(days: int, seed: int, sd: float = 0.1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, days)


def _ramp(days: int, onset: int, loss: float) -> np.ndarray:
    out = np.zeros(days)
    out[onset:] = -loss * np.arange(1, days - onset + 1) / (days - onset)
    return out


def test_a_drift_is_found_near_its_onset_and_a_flat_series_is_not() -> None:
    y = np.vstack([_noisy(60, 1) + _ramp(60, 30, 0.6), _noisy(60, 1)])
    found = drift.ramp(y, floor=0.05, margin=0.1)
    assert found.t[0] > 4
    assert abs(int(found.onset[0]) - 30) <= 6
    assert found.delta[0] > 0.4
    assert found.t[1] < 1


def test_a_dip_that_recovers_is_no_drift() -> None:
    dip = _noisy(60, 2)
    dip[30:50] += _ramp(20, 0, 0.6)  # falls, then the last ten days are back
    lasting = _noisy(60, 2) + _ramp(60, 30, 0.6)
    found = drift.ramp(np.vstack([dip, lasting]), floor=0.05, margin=0.1)
    assert found.t[0] < found.t[1] / 3


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 1000), st.integers(0, 30), st.integers(0, 30))
def test_the_drift_is_judged_on_the_customers_own_span(seed: int, before: int, after: int) -> None:
    y = _noisy(50, seed) + _ramp(50, 25, 0.5)
    padded = np.full(before + 50 + after, np.nan)
    padded[before : before + 50] = y
    alone = drift.ramp(y[None, :], floor=0.05)
    shifted = drift.ramp(padded[None, :], floor=0.05)
    np.testing.assert_allclose(shifted.t, alone.t, rtol=1e-6, atol=1e-6)
    if alone.onset[0] >= 0:
        assert shifted.onset[0] == alone.onset[0] + before


def test_wander_is_a_households_own_and_one_step_barely_moves_it() -> None:
    rng = np.random.default_rng(4)
    steady = rng.normal(0.0, 0.1, 70)
    weeks = np.repeat(rng.normal(0.0, 0.3, 10), 7)
    wandering = steady + weeks
    stepped = steady.copy()
    stepped[35:] -= 0.8
    y = np.vstack([steady, wandering, stepped])
    sigma = changepoint.noise(y, 0.01, pooled=False)
    w = changepoint.wander(y, sigma, pooled=False)
    assert w[1] > 0.15
    assert w[0] < 0.05
    assert w[2] < 0.1


def test_a_household_back_from_holiday_rebounds_and_a_theft_does_not() -> None:
    holiday, theft = _noisy(60, 5), _noisy(60, 5)
    holiday[30:42] -= 1.0
    holiday[42:] -= 0.3  # back, a little lower (summer)
    theft[30:] -= 0.6
    onset = np.array([30, 30])
    back = rebound(np.vstack([holiday, theft]), onset, 0.05)
    assert back[0] > 4
    assert back[1] < 3  # noise alone: the largest of many splits
