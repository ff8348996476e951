"""meterseal beside the usual anomaly baselines on the same labelled data.

Baselines (scikit-learn, unsupervised): IsolationForest and LocalOutlierFactor on a handful
of per-customer features over the customer's own days (mean, spread, share of zero
readings, day-to-day change, trend: `customer_features`), their strong form: on raw
readings as one vector (`raw_vectors`, as much of the literature applies them) both fall
to chance once customers cover different dates. meterseal's rows: the seed's SOM correlation
score alone, the unsupervised ensemble, and, when asked, the supervised model with
cross-validated (out-of-fold) scores.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.fraud.data import Consumption
from meterseal.fraud.ensemble import supervised, unsupervised
from meterseal.fraud.features import NAMES
from meterseal.fraud.metrics import Evaluation
from meterseal.fraud.pipeline import Analysis

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


def customer_features(data: Consumption) -> F64:
    """Each customer's summary over its own present days, columns robustly standardised:
    mean daily energy (log), spread of daily energy (sd / mean), share of zero readings,
    day-to-day change (mean |difference| / mean) and trend (least-squares slope of daily
    energy over the customer's own days, / mean, per day)."""
    energy = data.energy
    missing_day = np.isnan(energy).mean(axis=2) > 0.1
    daily = np.where(
        missing_day,
        np.nan,
        np.nansum(energy, axis=2)
        * energy.shape[2]
        / np.maximum((~np.isnan(energy)).sum(axis=2), 1),
    )
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(daily, axis=1)
        spread = np.nanstd(daily, axis=1) / mean
        zeros = np.nanmean(np.where(np.isnan(energy), np.nan, energy <= 1e-9), axis=(1, 2))
        change = np.nanmean(np.abs(np.diff(daily, axis=1)), axis=1) / mean
        day = np.arange(daily.shape[1], dtype=np.float64)[None, :]
        present = ~np.isnan(daily)
        t = np.where(present, day, np.nan)
        t_centred = t - np.nanmean(t, axis=1, keepdims=True)
        y_centred = daily - mean[:, None]
        slope = np.nansum(t_centred * y_centred, axis=1) / np.nansum(t_centred**2, axis=1)
        trend = slope / mean
        x = np.column_stack([np.log(mean + 1e-6), spread, zeros, change, trend])
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    centre = np.median(x, axis=0)
    scale = np.median(np.abs(x - centre), axis=0) * 1.4826
    out: F64 = (x - centre) / np.where(scale > 0, scale, 1.0)
    return out


def raw_vectors(data: Consumption) -> F64:
    """Each customer's readings as one row, gaps filled with its mean, columns standardised."""
    flat = data.energy.reshape(len(data.customers), -1)
    with np.errstate(invalid="ignore"):
        means = np.nan_to_num(np.nanmean(flat, axis=1))
    x = np.where(np.isnan(flat), means[:, None], flat)
    sd = x.std(0)
    out: F64 = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    return out


def isolation_forest(x: F64, seed: int) -> F64:
    """Anomaly score of scikit-learn's IsolationForest (higher: more anomalous)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed, n_jobs=1).fit(x)
    return np.asarray(-forest.score_samples(x), np.float64)


def local_outlier_factor(x: F64, neighbours: int = 20) -> F64:
    """Local outlier factor (higher: more anomalous)."""
    from sklearn.neighbors import LocalOutlierFactor

    lof = LocalOutlierFactor(n_neighbors=min(neighbours, len(x) - 1)).fit(x)
    return np.asarray(-lof.negative_outlier_factor_, np.float64)


@dataclass(frozen=True)
class Comparison:
    """Every method's figures on one data set."""

    dataset: str
    customers: int
    thieves: int
    rows: tuple[Evaluation, ...]


def compare(
    data: Consumption,
    analysis: Analysis,
    truth: B,
    patterns: Sequence[str],
    *,
    dataset: str,
    seed: int = 1,
    with_supervised: bool = False,
    analysis_seconds: float = 0.0,
    n: Sequence[int] = (100, 200),
    step: Callable[[str], object] = lambda _s: None,
) -> Comparison:
    """Evaluate meterseal (seed score, ensemble) and both baselines; `with_supervised` adds
    the supervised model, trained on the labels evaluated (5-fold: out-of-fold scores)."""
    rows = []
    table = analysis.table

    def add(method: str, scores: F64, seconds: float) -> None:
        rows.append(Evaluation.of(method, truth, patterns, scores, n, seconds))

    add("SOM correlation (seed)", table.column("som_break"), analysis_seconds)
    started = time.perf_counter()
    ensemble = unsupervised(table)
    add("meterseal", ensemble.score, analysis_seconds + time.perf_counter() - started)
    if with_supervised:
        step("supervised model (5-fold)")
        started = time.perf_counter()
        labels = dict(zip(table.customers, truth.tolist(), strict=True))
        scored = supervised(table, labels, seed=seed)
        add(scored.method, scored.score, analysis_seconds + time.perf_counter() - started)
    x = customer_features(data)
    step("IsolationForest")
    started = time.perf_counter()
    add("IsolationForest", isolation_forest(x, seed), time.perf_counter() - started)
    step("LocalOutlierFactor")
    started = time.perf_counter()
    add("LocalOutlierFactor", local_outlier_factor(x), time.perf_counter() - started)
    assert "som_break" in NAMES
    return Comparison(dataset, len(truth), int(truth.sum()), tuple(rows))
