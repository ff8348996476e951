"""AUC, MAP@N (Zheng et al. 2018) and recall per pattern on hand-checked rankings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.fraud.metrics import Evaluation, auc, map_at, ranking, recall_by_pattern


def test_map_at_n_follows_the_definition() -> None:
    # Thieves at positions 1, 3 and 6 of the ranking: MAP@5 = (1/1 + 2/3) / 2.
    truth = np.array([True, False, True, False, False, True, False])
    scores = np.arange(len(truth), 0, -1, dtype=float)
    assert map_at(truth, scores, 5) == pytest.approx((1 + 2 / 3) / 2)
    assert map_at(truth, scores, 7) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert map_at(~truth, scores, 1) == 0.0  # no thief in the top 1


def test_auc_of_perfect_reversed_and_tied_rankings() -> None:
    truth = np.array([True, True, False, False])
    assert auc(truth, np.array([4.0, 3.0, 2.0, 1.0])) == 1.0
    assert auc(truth, np.array([1.0, 2.0, 3.0, 4.0])) == 0.0
    assert auc(truth, np.zeros(4)) == 0.5
    assert np.isnan(auc(np.array([True, True]), np.array([1.0, 2.0])))


def test_recall_per_pattern_at_the_number_of_thieves() -> None:
    truth = np.array([True, True, True, False, False])
    patterns = ["a", "a", "b", "", ""]
    scores = np.array([5.0, 1.0, 4.0, 3.0, 0.0])  # top 3: rows 0, 2, 3
    assert recall_by_pattern(truth, patterns, scores) == {"a": 0.5, "b": 1.0}
    e = Evaluation.of("x", truth, patterns, scores, n=(2,))
    assert e.cut == 3
    assert e.map_at == {2: 1.0}


def test_ranking_is_stable_and_puts_nan_last() -> None:
    order = ranking(np.array([1.0, np.nan, 3.0, 1.0]))
    assert order.tolist() == [2, 0, 3, 1]


@given(st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=40), st.integers(0, 2**32 - 1))
def test_auc_is_the_share_of_correctly_ordered_pairs(values: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.random(len(values)) < 0.5
    if truth.all() or not truth.any():
        truth[0] = not truth[0]
    s = np.array(values)
    pos, neg = s[truth], s[~truth]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(truth, s) == pytest.approx(pairs)
