"""What the fraud commands write: the ranking CSV, labelled fleets, comparison tables."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meterseal.fraud.data import DAY, Consumption, FraudDataError
from meterseal.fraud.ensemble import Scores
from meterseal.fraud.evaluate import Comparison
from meterseal.fraud.explain import Explanation, explain
from meterseal.fraud.fleet import Labelled
from meterseal.fraud.metrics import ranking
from meterseal.fraud.pipeline import Analysis
from meterseal.meter.profiles import PER_DAY
from meterseal.meter.theft import LocalDays
from meterseal.ui import TextTable

F64 = npt.NDArray[np.float64]
RANKING_COLUMNS = (
    "rank",
    "customer_id",
    "score",
    "pattern",
    "feature",
    "t",
    "onset",
    "days_breaking_pattern",
    "explanation",
)


def hits(analysis: Analysis) -> F64:
    """Days mapped to each node of the map, over the whole population."""
    node = analysis.daily.node
    counts: F64 = np.bincount(node[node >= 0], minlength=analysis.shape_map.nodes).astype(float)
    return counts


def decimals(scores: F64, least: int = 3, most: int = 15) -> int:
    """Decimals enough to print every two different scores differently (at least `least`;
    65,000 customers' scores come within 1e-9 of each other, so up to `most`)."""
    values = np.unique(np.round(scores[np.isfinite(scores)], most))
    gaps = np.diff(values)
    if not len(gaps):
        return least
    return int(np.clip(np.ceil(-np.log10(gaps.min())) + 1, least, most))


def write_ranking(
    path: Path, data: Consumption, analysis: Analysis, scores: Scores
) -> list[Explanation]:
    """Every customer, most suspicious first, with its explanation; the explanations."""
    order = ranking(scores.score)
    customers = [scores.customers[i] for i in order.tolist()]
    why = explain(analysis, scores, data.first_day, data.period_days, data.regions, customers)
    places = decimals(scores.score)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(RANKING_COLUMNS)
            for e in why:
                out.writerow(
                    (
                        e.rank,
                        e.customer,
                        f"{e.score:.{places}f}",
                        e.pattern if e.score > 0 else "",
                        e.feature if e.score > 0 else "",
                        f"{e.t:.2f}",
                        e.onset or "",
                        " ".join(str(d) for d in e.days),
                        e.text(),
                    )
                )
    except OSError as exc:
        raise FraudDataError(f"cannot write {path}: {exc}") from None
    return why


def write_fleet(fleet: Labelled, path: Path) -> Path:
    """A labelled fleet as a long CSV at `path` and its labels beside it (with patterns)."""
    data = fleet.data
    labels = path.with_name(path.stem + "-labels.csv")
    day0 = (data.first_day - dt.date(1970, 1, 1)).days
    if data.tz is not None and data.slots == PER_DAY and data.period_days == 1:
        days = LocalDays.of(data.tz, day0, data.periods)  # local days back to UTC instants
    else:
        days = LocalDays.uniform(day0, data.periods, data.slots)
    step = DAY * data.period_days // data.slots
    cells = days.day_index() * data.slots + days.clock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(("customer_id", "timestamp", "kwh"))
            stamps = [
                dt.datetime.fromtimestamp(days.start + i * step, dt.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                for i in range(len(cells))
            ]
            for c, customer in enumerate(data.customers):
                flat = data.energy[c].ravel()[cells]
                for stamp, kwh in zip(stamps, flat.tolist(), strict=True):
                    out.writerow((customer, stamp, f"{kwh:.3f}"))
        with labels.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(("customer_id", "thief", "pattern", "onset"))
            for customer, thief, pattern in zip(
                data.customers, fleet.thief.tolist(), fleet.patterns, strict=True
            ):
                alt = fleet.alterations.get(customer)
                onset = dt.date(1970, 1, 1) + dt.timedelta(days=alt.onset_day) if alt else ""
                kind = str(alt.kind) if alt else ""
                out.writerow((customer, int(thief), pattern or kind, onset))
    except OSError as exc:
        raise FraudDataError(f"cannot write {path}: {exc}") from None
    return labels


def _pct(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def comparison_table(result: Comparison, n: tuple[int, ...] = (100, 200)) -> TextTable:
    """The evaluation table: one row per method, AUC, MAP@N and recall per pattern."""
    patterns = sorted({p for row in result.rows for p in row.recall})
    headers = ("method", "AUC", *(f"MAP@{k}" for k in n), *patterns, "seconds")
    rows = []
    for e in result.rows:
        rows.append(
            (
                e.method,
                _pct(e.auc),
                *(_pct(e.map_at.get(k, float("nan"))) for k in n),
                *(f"{e.recall.get(p, float('nan')):.0%}" for p in patterns),
                f"{e.seconds:.1f}",
            )
        )
    notes = (
        f"{result.dataset}: {result.customers:,} customers, {result.thieves:,} thieves; "
        f"recall per pattern at a cut of {result.thieves:,} (the number of thieves)",
        "MAP@N as Zheng et al. (2018); baselines on per-customer features (mean, spread, "
        "zero share, day-to-day change, trend)",
    )
    return TextTable("Fraud detection: ranking quality", headers, tuple(rows), notes)
