"""The fraud job's steps over a population, chunk by chunk: map, per-day series, features.

1. Train the shape map on a sample of days (a random subset of customers' curves).
2. For each chunk of customers: per-day summaries, map each day, regular behaviour and
   correlations (`features.daily`); only the per-day series are kept (small).
3. Features over the whole population (the neighbourhood needs every customer's days).
Randomness comes only from `Settings.seed`: the same data and seed give the same scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from meterseal.fraud.daily import Daily, daily
from meterseal.fraud.data import Consumption, FraudDataError
from meterseal.fraud.days import fill_days
from meterseal.fraud.features import FeatureTable, features
from meterseal.fraud.som import ShapeMap, hourly, train_map, zcurves

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Settings:
    """Knobs of the fraud job (defaults are the documented ones)."""

    map_rows: int = 8
    map_cols: int = 8
    iterations: int = 20_000  # SOM training steps (one sampled day each)
    sample_days: int = 20_000  # days the map is trained on
    chunk: int = 2_000  # customers scored at once
    seed: int = 1


def sample_curves(data: Consumption, days: int, rng: np.random.Generator) -> F64:
    """Up to `days` standardised curves of usable days, drawn at random from `data`."""
    filled, missing = fill_days(data.energy)
    z, usable = zcurves(hourly(filled))
    ok = np.flatnonzero((usable & ~missing).ravel())
    if not len(ok):
        raise FraudDataError("no usable day to learn load shapes from (all missing or flat)")
    pick = rng.choice(ok, size=min(days, len(ok)), replace=False)
    sample: F64 = z.reshape(-1, z.shape[-1])[np.sort(pick)]
    return sample


def fit_map(sample: Consumption, settings: Settings) -> ShapeMap:
    """The shape map trained on a random sample of `sample`'s days."""
    rng = np.random.default_rng(settings.seed)
    curves = sample_curves(sample, settings.sample_days, rng)
    return train_map(
        curves,
        rows=settings.map_rows,
        cols=settings.map_cols,
        iterations=settings.iterations,
        seed=settings.seed,
    )


@dataclass(frozen=True)
class Analysis:
    """A population analysed: its map, per-day series and features."""

    shape_map: ShapeMap
    daily: Daily
    table: FeatureTable
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each step


def analyse_chunks(
    sample: Consumption,
    chunks: Iterable[Consumption],
    settings: Settings,
    *,
    progress: Callable[[int], object] = lambda _n: None,
) -> Analysis:
    """Analyse a population given as chunks (streamed: only per-day series are kept)."""
    started = time.perf_counter()
    smap = fit_map(sample, settings)
    mapped = time.perf_counter() - started
    parts: list[Daily] = []
    customers: list[str] = []
    regions: list[str] = []
    has_regions = True
    for chunk in chunks:
        parts.append(daily(chunk, smap))
        customers += chunk.customers
        has_regions = has_regions and chunk.regions is not None
        regions += chunk.regions or ()
        progress(len(chunk.customers))
    if not parts:
        raise FraudDataError("no customers to analyse")
    series = Daily.concat(parts)
    started = time.perf_counter()
    table = features(tuple(customers), series, regions if has_regions else None)
    return Analysis(smap, series, table, {"map": mapped, "features": time.perf_counter() - started})


def sample_of(data: Consumption, customers: int, seed: int) -> Consumption:
    """A random subset of customers to train the map on."""
    rng = np.random.default_rng(seed)
    n = len(data.customers)
    rows = np.sort(rng.choice(n, size=min(customers, n), replace=False))
    return data.take(rows)


def analyse(
    data: Consumption,
    settings: Settings = Settings(),
    *,
    progress: Callable[[int], object] = lambda _n: None,
) -> Analysis:
    """Analyse an in-memory population."""
    sample = sample_of(data, max(settings.sample_days // max(data.periods, 1), 1), settings.seed)
    return analyse_chunks(sample, data.chunks(settings.chunk), settings, progress=progress)
