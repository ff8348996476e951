"""What the fraud commands write: scores printed so that no two different ones look alike."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from meterseal.fraud.report import decimals


def test_three_decimals_when_they_suffice_and_equal_scores_print_alike() -> None:
    assert decimals(np.array([0.5, 0.25, 3.0])) == 3
    assert decimals(np.array([0.7, 0.7, np.nan, -np.inf])) == 3


def test_scores_a_billionth_apart_print_apart() -> None:
    """Two of 65,000 customers' scores (a real rank run) 1e-10 apart: 9 decimals tied them."""
    scores = np.array([0.6439153561234, 0.6439153562234, 1.5])
    places = decimals(scores)
    printed = {f"{s:.{places}f}" for s in scores}
    assert len(printed) == 3


@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=200, unique=True).filter(
        lambda v: np.diff(np.sort(v)).min() > 1e-13
    )
)
def test_different_scores_never_print_alike(values: list[float]) -> None:
    scores = np.array(values)
    places = decimals(scores)
    assert len({f"{s:.{places}f}" for s in scores}) == len(values)
