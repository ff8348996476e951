"""A window of each day bypassed: its hours lose most of their energy, the rest keep theirs.

A heavy appliance wired around the meter (or a meter bridged for some hours each day)
removes a window of hours from every day from an onset on, and nothing else: the other
hours' energy stays what it was. For each customer and each window of `LENGTHS` hours
(starting on every hour, wrapping past midnight) the daily series is the log of the
window's energy over the rest of the day's; its largest lasting drop beyond `MARGIN`
(`changepoint.drop`, each customer on its own span) counts only as far as the rest of the
day kept its energy at that onset (`kept`, both ways): a household that moved its evening
to other hours (a new routine, a season's daylight) raised the rest of its day, one that
went away lowered it. The customer's statistic is its best window. Daily data (fewer than
24 slots a day) has no window: 0 for everyone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint

F64 = npt.NDArray[np.float64]
LENGTHS = (3, 6)  # hours: a 3-8 hour window holds a whole 3-hour one, on the hour
MARGIN = 0.7  # log units: a window losing under half its share is not evidence
FLOOR = 0.05  # log units: the least day-to-day noise of a window's share
EPS = 0.05  # a window's energy is compared with this share of a typical day added
BLOCK = 500  # customers at once (their series: BLOCK x windows x days)


def window_drop(
    hours: F64,
    missing: npt.NDArray[np.bool_],
    kept: Callable[[F64, npt.NDArray[np.int64]], F64],
) -> changepoint.Step:
    """Per customer, the t of its best bypassed window; `hours` is (C, D, 24) energy per
    hour (0 on missing days), `kept(series, onset)` how well a series kept its level."""
    customers, days, slots = hours.shape
    t_out = np.zeros(customers)
    onset_out = np.full(customers, -1, np.int64)
    delta_out = np.zeros(customers)
    if slots < 24 or days < 2:
        return changepoint.Step(t_out, onset_out, delta_out)
    per_hour = slots // 24
    for lo in range(0, customers, BLOCK):
        h = hours[lo : lo + BLOCK]
        gone = missing[lo : lo + BLOCK]
        rows = len(h)
        wrapped = np.concatenate([h, h], axis=2)
        cum = np.concatenate([np.zeros((rows, days, 1)), np.cumsum(wrapped, axis=2)], axis=2)
        day = cum[:, :, slots]
        present = np.where(gone, np.nan, day)
        with warnings.catch_warnings():  # a customer without a present day: typical 0
            warnings.simplefilter("ignore", RuntimeWarning)
            typical = np.nan_to_num(np.nanmedian(present, axis=1, keepdims=True))
        shares, rests = [], []
        for length in LENGTHS:
            share = length / 24
            for start in range(0, slots, per_hour):
                inside = cum[:, :, start + length * per_hour] - cum[:, :, start]
                rest = np.log(day - inside + EPS * (1 - share) * typical + 1e-12)
                ratio = np.log(inside + EPS * share * typical + 1e-12) - rest
                shares.append(np.where(gone, np.nan, ratio))
                rests.append(np.where(gone, np.nan, rest))
        windows = len(shares)
        y = np.stack(shares, axis=1).reshape(rows * windows, days)
        step = changepoint.drop(y, floor=FLOOR, margin=MARGIN)
        held = kept(np.stack(rests, axis=1).reshape(rows * windows, days), step.onset)
        t = np.where(step.t > 0, step.t * held, step.t).reshape(rows, windows)
        best = np.argmax(t, axis=1)
        r = np.arange(rows)
        t_out[lo : lo + rows] = t[r, best]
        onset_out[lo : lo + rows] = step.onset.reshape(rows, windows)[r, best]
        delta_out[lo : lo + rows] = step.delta.reshape(rows, windows)[r, best]
    return changepoint.Step(t_out, onset_out, delta_out)
