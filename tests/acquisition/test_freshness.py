"""Anti-replay window and time window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.acquisition.freshness import FreshnessPolicy, FreshnessState
from meterseal.errors import RejectReason
from meterseal.model import Reading

NOW = 1_793_000_000
POLICY = FreshnessPolicy(window=16, max_age_seconds=86_400, max_skew_seconds=300)


def _reading(counter: int, timestamp: int = NOW - 900) -> Reading:
    return Reading("M", counter, timestamp, 900, 1)


@given(st.permutations(list(range(1, 17))))
def test_reordering_within_the_window_loses_nothing(order: list[int]) -> None:
    state = FreshnessState()
    for counter in order:
        assert state.check(_reading(counter), NOW, POLICY) is None
        state.advance("M", counter)
    assert state.highest("M") == 16


def test_counter_older_than_the_window_is_stale() -> None:
    state = FreshnessState({"M": 100})
    assert state.check(_reading(85), NOW, POLICY) is None  # 100 - 16 < 85: maybe reordered
    assert state.check(_reading(84), NOW, POLICY) is RejectReason.STALE_COUNTER
    assert state.check(_reading(1), NOW, POLICY) is RejectReason.STALE_COUNTER


def test_timestamps_outside_the_time_window() -> None:
    state = FreshnessState()
    assert state.check(_reading(1, NOW + 301), NOW, POLICY) is RejectReason.FUTURE_TIMESTAMP
    assert state.check(_reading(1, NOW + 300), NOW, POLICY) is None
    assert state.check(_reading(1, NOW - 86_400 - 901), NOW, POLICY) is RejectReason.STALE_TIMESTAMP


def test_check_does_not_change_state_and_advance_only_moves_up() -> None:
    state = FreshnessState()
    state.check(_reading(5), NOW, POLICY)
    assert state.highest("M") is None
    state.advance("M", 5)
    state.advance("M", 3)
    assert state.highest("M") == 5


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        FreshnessPolicy(window=0)
