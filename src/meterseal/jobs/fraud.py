"""The fraud ranking job: a fleet's per-day analysis spread over Dask, chunk by chunk.

The single-process pipeline (`meterseal.fraud.pipeline.analyse`) trains the shape map on a
sample, maps each chunk of customers to per-day series (`daily`), then computes the features
over the whole population. Only the middle step is independent per chunk, so only it is a
Dask task; the map is trained once here, the per-day series come back in chunk order and the
features and scores are computed here, so the ranking is the single-process one.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

from meterseal.fraud.daily import Daily, daily
from meterseal.fraud.data import Consumption, FraudDataError
from meterseal.fraud.ensemble import Scores, unsupervised
from meterseal.fraud.features import features
from meterseal.fraud.pipeline import Analysis, Settings, fit_map, sample_of
from meterseal.fraud.som import ShapeMap
from meterseal.jobs.engine import Engine
from meterseal.jobs.monitor import Monitor
from meterseal.jobs.runner import run_chunks


def _daily(shape_map: ShapeMap, chunk: Sequence[Consumption]) -> Daily:
    """A task: the per-day series of one chunk of customers."""
    (customers,) = chunk
    return daily(customers, shape_map)


def analyse_on(engine: Engine, data: Consumption, settings: Settings, *, key: str) -> Analysis:
    """`analyse(data, settings)` with the per-chunk step on `engine`: the same analysis."""
    sample = sample_of(data, max(settings.sample_days // max(data.periods, 1), 1), settings.seed)
    shape_map = fit_map(sample, settings)
    chunks = [[chunk] for chunk in data.chunks(settings.chunk)]
    if not chunks:
        raise FraudDataError("no customers to analyse")
    parts: dict[int, Daily] = {}
    ticks = itertools.count()
    run_chunks(
        engine,
        functools.partial(_daily, shape_map),
        chunks,
        parts.__setitem__,
        monitor=Monitor(len(chunks), 1e9, clock=lambda: float(next(ticks))),
        key=key,
    )
    ordered = [chunk for (chunk,) in chunks]
    customers = tuple(c for chunk in ordered for c in chunk.customers)
    has_regions = all(chunk.regions is not None for chunk in ordered)
    regions = [r for chunk in ordered for r in chunk.regions or ()]
    series = Daily.concat([parts[i] for i in range(len(chunks))])
    table = features(customers, series, regions if has_regions else None)
    return Analysis(shape_map, series, table, {})


def rank_on(engine: Engine, data: Consumption, settings: Settings, *, key: str) -> Scores:
    """The unsupervised ensemble's scores of a fleet, its analysis spread over `engine`."""
    return unsupervised(analyse_on(engine, data, settings, key=key).table)
