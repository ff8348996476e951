"""The fraud ranking job on Dask gives the single-process ranking."""

from __future__ import annotations

import dataclasses

import numpy as np

from meterseal.fraud.ensemble import unsupervised
from meterseal.fraud.fleet import Labelled
from meterseal.fraud.metrics import ranking
from meterseal.fraud.pipeline import analyse
from meterseal.jobs.engine import Engine
from meterseal.jobs.fraud import analyse_on, rank_on
from tests.fraud.conftest import SETTINGS, small_fleet  # noqa: F401 - fixture

CHUNKED = dataclasses.replace(SETTINGS, chunk=90)  # 400 customers: 5 chunks, the last short


def test_the_spread_ranking_is_the_single_process_one(
    small_fleet: Labelled,  # noqa: F811 - the fixture
    engine: Engine,
) -> None:
    alone = analyse(small_fleet.data, CHUNKED)
    spread = analyse_on(engine, small_fleet.data, CHUNKED, key="fraud-a")
    assert spread.table.customers == alone.table.customers
    expected = unsupervised(alone.table)
    scores = rank_on(engine, small_fleet.data, CHUNKED, key="fraud-b")
    assert scores.customers == expected.customers
    np.testing.assert_array_equal(scores.score, expected.score)
    np.testing.assert_array_equal(ranking(scores.score), ranking(expected.score))
