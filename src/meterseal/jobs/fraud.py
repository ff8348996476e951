"""The fraud ranking job: a fleet's per-day analysis spread over Dask, chunk by chunk.

The single-process pipeline (`meterseal.fraud.pipeline.analyse`) trains the shape map on a
sample, maps each chunk of customers to per-day series (`daily`), then computes the features
over the whole population. Only the middle step is independent per chunk, so only it is a
Dask task; the map is trained once here, the per-day series come back in chunk order and the
features and scores are computed here, so the ranking is the single-process one.

As a Manager's job (`rank_job`) it reads the fleet-month from the store as `meterseal fraud
rank --store` does and writes the same ranking CSV, replaced whole, as the job's result.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterseal.fraud.daily import Daily, daily
from meterseal.fraud.data import Consumption, FraudDataError
from meterseal.fraud.ensemble import Scores, unsupervised
from meterseal.fraud.features import features
from meterseal.fraud.pipeline import Analysis, Settings, fit_map, sample_of
from meterseal.fraud.som import ShapeMap
from meterseal.jobs.engine import Engine
from meterseal.jobs.monitor import Monitor
from meterseal.jobs.runner import run_chunks

MonitorOf = Callable[[int], Monitor]


class RankingCancelled(FraudDataError):
    """The job was cancelled before every chunk's series came back."""


@dataclass(frozen=True)
class RankSpec:
    """A fraud ranking job's input: the store's fleet over `days` local days of `tz`."""

    store: str
    first_day: str  # YYYY-MM-DD
    days: int
    tz: str
    seed: int = 1
    chunk: int = Settings.chunk  # customers per task
    # Set: the readings come from the months `kvs export` wrote, through this gateway.
    kvs: str | None = None
    kvs_key_env: str = "MS_KVS_KEY"  # the variable holding its API key (read rights)
    kvs_ca: str | None = None  # its CA certificate's path (https)

    def settings(self) -> Settings:
        """The fraud pipeline's settings, `fraud rank`'s with this seed and chunk."""
        return Settings(seed=self.seed, chunk=self.chunk)


def _daily(shape_map: ShapeMap, chunk: Sequence[Consumption]) -> Daily:
    """A task: the per-day series of one chunk of customers."""
    (customers,) = chunk
    return daily(customers, shape_map)


def analyse_on(
    engine: Engine,
    data: Consumption,
    settings: Settings,
    *,
    key: str,
    monitor: MonitorOf | None = None,
    **run: Any,
) -> Analysis:
    """`analyse(data, settings)` with the per-chunk step on `engine`: the same analysis.

    `monitor` makes the job's Monitor from its task count; `run` goes to `run_chunks`.
    """
    sample = sample_of(data, max(settings.sample_days // max(data.periods, 1), 1), settings.seed)
    shape_map = fit_map(sample, settings)
    chunks = [[chunk] for chunk in data.chunks(settings.chunk)]
    if not chunks:
        raise FraudDataError("no customers to analyse")
    parts: dict[int, Daily] = {}
    ticks = itertools.count()
    watch = monitor or (lambda n: Monitor(n, 1e9, clock=lambda: float(next(ticks))))
    ran = run_chunks(
        engine,
        functools.partial(_daily, shape_map),
        chunks,
        parts.__setitem__,
        monitor=watch(len(chunks)),
        key=key,
        **run,
    )
    if ran.cancelled:
        raise RankingCancelled(f"{key} was cancelled")
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


def read_fleet(spec: RankSpec) -> Consumption:
    """The fleet's readings from the store, as `meterseal fraud rank --store` reads them."""
    from meterseal.fraud.readers import read_store
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    with Store.open_read_only(spec.store) as db:
        return read_store(
            BillStore(db), dt.date.fromisoformat(spec.first_day), spec.days, tz=spec.tz
        )


def rank_job(
    engine: Engine,
    spec: RankSpec,
    out: Path,
    *,
    key: str,
    read: Callable[[RankSpec], Consumption] = read_fleet,
    **run: Any,
) -> int:
    """Rank the fleet `read` reads (the store's: `read_fleet`) on `engine` and write `fraud
    rank`'s CSV to `out`; customers ranked."""
    from meterseal.fraud.report import write_ranking

    data = read(spec)
    analysis = analyse_on(engine, data, spec.settings(), key=key, **run)
    scores = unsupervised(analysis.table)
    spare = out.with_name(out.name + ".part")
    write_ranking(spare, data, analysis, scores)
    spare.replace(out)  # the result appears whole, once
    return len(data.customers)
