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


def _population(
    seed: int, season: float, days: int = 90, per_kind: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two kinds of household (evening or morning peak), each customer on its own span of
    the window (gaps at either end); the evening kind goes through a season from its own
    start (a linear change of `season` log units over 60 days), the morning kind does not.
    Returns daily series, hours (customers, days, 24) and the kind of each customer."""
    rng = np.random.default_rng(seed)
    customers = 2 * per_kind
    kind = np.repeat([0, 1], per_kind)
    y = np.full((customers, days), np.nan)
    hours = np.zeros((customers, days, 24))
    evening = np.exp(-0.5 * ((np.arange(24) - 19) / 2.0) ** 2) + 0.2
    morning = np.exp(-0.5 * ((np.arange(24) - 7) / 2.0) ** 2) + 0.2
    for c in range(customers):
        first = int(rng.integers(0, 20))
        length = int(rng.integers(55, days - first + 1))
        own = np.arange(length)
        trend = season * own / 60 if kind[c] == 0 else np.zeros(length)
        y[c, first : first + length] = trend + rng.normal(0.0, 0.1, length)
        shape = evening if kind[c] == 0 else morning
        hours[c, first : first + length] = shape * rng.uniform(0.8, 1.2, (length, 1))
    return y, hours, kind


def _peer_ramp(y: np.ndarray, hours: np.ndarray) -> changepoint.Step:
    peers = drift.peers_of(drift.profile(hours, np.isnan(y)))
    return drift.ramp(drift.peer_relative(y, peers), floor=0.05, margin=0.1)


def test_peers_are_households_whose_usual_day_looked_alike_at_their_start() -> None:
    y, hours, kind = _population(3, -0.6)
    peers = drift.peers_of(drift.profile(hours, np.isnan(y)))
    assert peers.shape == (len(y), min(drift.PEERS, len(y) - 1))
    assert (kind[peers] == kind[:, None]).mean() > 0.95
    assert not (peers == np.arange(len(y))[:, None]).any()


def test_a_drifting_customer_ranks_above_honest_households_going_through_a_season() -> None:
    y, hours, kind = _population(5, -0.6)
    thief = int(np.flatnonzero(kind == 1)[0])  # a morning household: its peers hold level
    span = np.flatnonzero(~np.isnan(y[thief]))
    onset = int(span[0] + len(span) // 2)
    y[thief, onset : span[-1] + 1] += _ramp(span[-1] + 1 - onset, 0, 0.6)
    seasonal = kind == 0
    # Against its own history alone, a season's slow decline passes for a drift...
    alone = drift.ramp(y, floor=0.05, margin=0.1)
    assert alone.t[seasonal].max() > alone.t[thief]
    # ... against its peers' change over as many days, only the thief's register drifts.
    found = _peer_ramp(y, hours)
    assert found.t[thief] > 3.0
    assert found.t[thief] > 2 * np.delete(found.t, thief).max()


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.9, 0.9))
def test_a_season_shared_by_households_that_started_alike_is_no_drift(
    seed: int, season: float
) -> None:
    y, hours, _kind = _population(seed, season)
    assert _peer_ramp(y, hours).t.max() < 3.0  # alone, a decline of 0.4 or more scores > 10


def test_a_ramp_keeps_its_days_through_despiking_and_a_busy_day_does_not() -> None:
    ramp = _noisy(60, 6, 0.05) + _ramp(60, 30, 0.6)
    spike = _noisy(60, 6, 0.05)
    spike[29] += 1.5  # one busy day, then days as before
    out = drift.despiked(np.vstack([ramp, spike]), 0.05)
    np.testing.assert_allclose(out[0], ramp, atol=0.05)  # at most a noisy day trimmed
    assert out[1, 29] < 0.5
    np.testing.assert_allclose(np.delete(out[1], 29), np.delete(spike, 29), atol=0.05)


def test_a_step_at_the_split_is_no_gradual_loss_and_a_ramp_is() -> None:
    ramp = _ramp(60, 30, 0.6)
    step = np.zeros(60)
    step[30:] = -0.6
    y = np.vstack([ramp, step])
    onset = np.array([30, 30])
    end = np.array([60.0, 60.0])
    share = drift._gradual(y, np.zeros(2), np.array([-0.6, -0.6]), onset, end)
    np.testing.assert_allclose(share, [1.0, 0.0])
