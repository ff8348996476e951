"""A register that drifts, seen in the levels its readings sit at, week by week.

`level_shift` compares the piles of a customer's log readings (its appliances' powers)
before a split day with those after it. A drifting register moves them by a factor that
grows from the onset on, which blurs the piles of a long stretch of days; so here the days
after the split are cut into weeks and each week's histogram is aligned on its own with the
one before the split (`level_shift.align`). A drift shows as shifts that fall along a line
from 0 at the onset, week after week, with the piles still matching once shifted. The
statistic is the drop the line reaches at the customer's own last day over the weeks'
scatter about it, counted as far as the shifted piles agree (a season or a habit changes
the piles' sizes, it does not slide them), and only when the last week is down too. Per
customer, no population: its calendar and season do not enter it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint
from meterseal.fraud.level_shift import (
    AGREE_FROM,
    AGREE_SPAN,
    BIN,
    BINS,
    MIN_SLOTS,
    aligned_with,
    histograms,
    level_drop,
    prepared,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
WEEK = 7  # days a shift is read from: a whole week holds its weekdays and its weekend
MIN_BEFORE = 14  # days with readings before a split: piles to align each later week with
MIN_WEEKS = 3  # whole weeks after a split: a line through fewer is no drift
SCATTER_FLOOR = BIN  # a week's shift is read to a bin: its scatter is never taken as less


def drift_of_levels(hists: F32) -> changepoint.Step:
    """The drift of each customer's reading levels (t-like; onset; log drop reached at its
    last day) from its days' histograms (`level_shift.histograms`)."""
    c, d, _ = hists.shape
    present = hists.sum(axis=2) > 0
    cum = np.zeros((c, d + 1, BINS), np.float32)  # running counts, as level_shift's
    np.cumsum(hists, axis=1, dtype=np.float32, out=cum[:, 1:])
    # Days with readings up to each day: a gap before the split is no day of evidence.
    count = np.concatenate([np.zeros((c, 1), np.int64), np.cumsum(present, axis=1)], axis=1)
    first = np.argmax(present, axis=1)
    end = changepoint.own_end(present)
    rows = np.arange(c)
    best, drop = np.zeros(c), np.zeros(c)
    onset = np.full(c, -1, np.int64)
    # Splits whole weeks before each customer's own last day: the last week tested ends
    # there (a drift that recovered in the last days is no drift).
    for weeks in range(MIN_WEEKS, max(d // WEEK, MIN_WEEKS - 1) + 1):
        k = end - WEEK * weeks
        ok = (k > first) & (count[rows, np.maximum(k, 0)] - count[rows, first] >= MIN_BEFORE)
        if not ok.any():
            continue
        k = np.maximum(k, 0)
        before = (cum[rows, k] - cum[rows, first]).astype(np.float64)
        reference = prepared(before)
        shift, match = np.zeros((c, weeks)), np.zeros((c, weeks))
        used = np.zeros((c, weeks), bool)
        for i in range(weeks):
            week = (cum[rows, k + WEEK * (i + 1)] - cum[rows, k + WEEK * i]).astype(np.float64)
            shift[:, i], match[:, i], _ = aligned_with(reference, week)
            used[:, i] = ok & (week.sum(axis=1) > 0)
        value, size = _line(shift, match, used, weeks)
        better = value > best
        best = np.where(better, value, best)
        drop = np.where(better, size, drop)
        onset = np.where(better, k, onset)
    return changepoint.Step(t=best, onset=onset, delta=drop)


def _line(shift: F64, match: F64, used: B, weeks: int) -> tuple[F64, F64]:
    """Per row: the drift statistic of its weekly shifts (0: no drift) and the drop the
    line through 0 at the onset reaches at the row's last day."""
    n = used.sum(axis=1)
    # Each week's place between the onset (0) and the customer's last day (1).
    x = np.where(used, (np.arange(shift.shape[1]) + 0.5) / weeks, 0.0)
    s = np.where(used, shift, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.nan_to_num((x * s).sum(axis=1) / (x * x).sum(axis=1))
        resid = np.where(used, s - slope[:, None] * x, 0.0)
        scatter = np.sqrt((resid**2).sum(axis=1) / np.maximum(n - 1, 1) + SCATTER_FLOOR**2)
        mean_match = np.nan_to_num(np.where(used, match, 0.0).sum(axis=1) / n)
    agree = np.clip((mean_match - AGREE_FROM) / AGREE_SPAN, 0.0, 1.0)
    last_week = shift.shape[1] - 1 - np.argmax(used[:, ::-1], axis=1)
    last = np.take_along_axis(s, last_week[:, None], axis=1)[:, 0]
    ok = (n >= MIN_WEEKS) & (slope < 0) & (last < 0)
    value: F64 = np.where(ok, -slope / scatter * agree, 0.0)
    size: F64 = np.where(ok, -slope, 0.0)
    return value, size


def level_changes(energy: F64) -> tuple[changepoint.Step, changepoint.Step]:
    """The level shift (`level_shift.level_drop`) and the level drift of each customer's
    readings (customers, periods, slots) from one pass of histograms; nothing for data with
    fewer than `MIN_SLOTS` readings a period."""
    c, _, slots = energy.shape
    if slots < MIN_SLOTS:
        none = changepoint.Step(np.zeros(c), np.full(c, -1, np.int64), np.zeros(c))
        return none, none
    hists = histograms(energy)
    return level_drop(hists), drift_of_levels(hists)
