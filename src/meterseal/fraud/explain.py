"""Why a customer is ranked where it is: which pattern, which feature, from when, which days.

For a flagged customer the explanation names the strongest detector (the theft pattern),
the feature that carries most of its evidence (with its t statistic and meaning), the day
that feature's lasting change starts, and the days from then on that break the customer's
own earlier behaviour by more than `DEVIATION` times their day-to-day noise (reversed days:
the days that match the customer's earlier days reversed in time better than as they were).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint
from meterseal.fraud.daily import F32, wide
from meterseal.fraud.ensemble import DETECTORS, Scores
from meterseal.fraud.features import FEATURES, NAMES, series
from meterseal.fraud.metrics import ranking
from meterseal.fraud.pipeline import Analysis
from meterseal.fraud.reversal import reversal_series
from meterseal.fraud.som import zcurves

F64 = npt.NDArray[np.float64]
DEVIATION = 2.0


@dataclass(frozen=True)
class Explanation:
    """One customer's place in the ranking and the evidence behind it."""

    customer: str
    rank: int  # 1 = most suspicious
    score: float
    pattern: str
    feature: str
    t: float
    meaning: str
    onset: dt.date | None
    days: tuple[dt.date, ...]  # days breaking the pattern (from the onset on)
    evidence: tuple[tuple[str, float], ...]  # the detector's features and their t

    def text(self) -> str:
        """One line for a table or a report."""
        if self.score <= 0:
            return "no evidence of theft"
        since = f" since {self.onset}" if self.onset else ""
        days = f"; {len(self.days)} day(s) break the pattern" if self.days else ""
        return f"{self.pattern}: {self.meaning}{since} ({self.feature} t={self.t:.1f}){days}"


def _days(y: F64, onset: int, drop: bool, floor: float) -> list[int]:
    """Days from `onset` on that deviate from the mean before it by > DEVIATION noise."""
    before = y[:onset][~np.isnan(y[:onset])]
    if onset <= 0 or not len(before):
        return []
    sigma = float(changepoint.noise(y[None, :], floor)[0])
    gap = before.mean() - y[onset:]
    gap = gap if drop else np.abs(gap)
    return [onset + int(i) for i in np.flatnonzero(np.nan_to_num(gap) > DEVIATION * sigma)]


def _reversed_days(hours: F32, onset: int) -> list[int]:
    """Days from `onset` on that match the customer's earlier days reversed better (r > 0)."""
    z, usable = zcurves(wide(hours)[None])
    r = reversal_series(z, usable)[0, onset - 1]
    return [d for d in range(onset, len(r)) if r[d] > 0]


def explain(
    analysis: Analysis,
    scores: Scores,
    first_day: dt.date,
    period_days: int,
    regions: Sequence[str] | None,
    customers: Sequence[str],
) -> list[Explanation]:
    """Explanations for the named customers, in ranking order."""
    table = analysis.table
    order = ranking(scores.score)
    rank_of = np.empty(len(order), np.int64)
    rank_of[order] = np.arange(1, len(order) + 1)
    rows = sorted((table.customers.index(c) for c in customers), key=lambda r: rank_of[r])
    if not rows:
        return []
    # The series subtract what every neighbour did each day: computed over everyone.
    tests = series(analysis.daily, regions)
    out = []
    for row in rows:
        detector = DETECTORS[int(np.argmax(scores.detectors[row]))]
        evidence = tuple(
            (name, float(table.values[row, NAMES.index(name)])) for name in detector.features
        )
        feature, t = evidence[0] if evidence[0][1] >= 1 else max(evidence, key=lambda e: e[1])
        j = NAMES.index(feature)
        onset = int(table.onset[row, j])
        days: list[int] = []
        if feature in tests and onset > 0:
            s = tests[feature]
            days = _days(s.y[row], onset, s.drop, s.floor)
        elif feature == "own_reversal" and onset > 0:
            days = _reversed_days(analysis.daily.hours[row], onset)
        elif onset > 0:
            days = list(range(onset, analysis.daily.total.shape[1]))

        def date(period: int) -> dt.date:
            return first_day + dt.timedelta(days=period * period_days)

        out.append(
            Explanation(
                table.customers[row],
                int(rank_of[row]),
                float(scores.score[row]),
                detector.pattern,
                feature,
                t,
                FEATURES[j].meaning,
                date(onset) if onset > 0 else None,
                tuple(date(d) for d in days),
                evidence,
            )
        )
    return out
