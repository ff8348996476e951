"""A register that drifts: consumption losing a growing share from an onset day on.

For each customer's daily series y (NaN = missing) and each split k, a least-squares fit
over the customer's own present days of y_t = a + b * g_k(t), where g_k is 0 before k and
rises linearly to 1 at the customer's own last day. The statistic is the t of -b beyond a
margin, (-b - margin) / se(b), with se from the series' robust day-to-day noise
(`changepoint.noise`) plus its own week-to-week wander (`changepoint.wander`): a household
whose weeks differ anyway needs a larger drift to count. The last quarter of the days
after k must still show half of the loss the fit puts there (a dip that recovered is no
drift), and the first half of them must have lost less than the second (`_gradual`: a
step is the scaled-readings detector's, not a drift). Single-day spikes are cut back
first (`despiked`): one busy day just before an onset would pass for the top of a ramp.
Every split costs a few suffix sums.

A season is a slow change too, and the population's calendar days need not be shared (nor
its seasons), so the series are first taken relative to peers (`peer_relative`): each
customer's change since its own first day less the median change of the `PEERS`
customers whose usual day at their start looked most like its own (`profile`: the share
of the day's energy in each hour), over as many days since theirs. Households that
started alike (the same kind of household at the same time of year) go through the same
season in the weeks after; a drifting register is the customer's alone.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from meterseal.fraud import changepoint

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MIN_AFTER = 10  # present days after the split: a drift is seen over more than a week
MIN_BEFORE = 5  # present days before it
STEP_LIKE = (0.5, 0.9)  # loss of the first half after the split / the second's: a ramp
# gives 1/3, a step 1; up to the first value counts fully, from the second not at all
CLIP = 3.0  # a day further than this many noise units from the week around it: a spike
WIDTH = 7  # days of the window a spike is judged against
START = 14  # days from each customer's first one that describe its usual day and level
PEERS = 30  # customers whose days looked alike at their start: the peers of a customer
MIN_PEERS = 5  # peers with data on a day needed to speak of their change that day
REFERENCE = 2000  # customers the peers are drawn from (every n-th: a large fleet's search
# costs customers x REFERENCE, not customers squared)
BLOCK = 1000  # customers whose peers are found at once


def despiked(y: F64, floor: float, *, clip: float = CLIP, width: int = WIDTH) -> F64:
    """Each row with its single-day spikes cut back: values further than `clip` times the
    row's day-to-day noise from the median of the `width` days around them are clipped (one
    busy day just before an onset would otherwise pass for the top of a ramp)."""
    half = width // 2
    pad = np.pad(y, ((0, 0), (half, half)), constant_values=np.nan)
    with warnings.catch_warnings():  # all-NaN windows (gaps) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(sliding_window_view(pad, width, axis=1), axis=2)
    sigma = changepoint.noise(y, floor)[:, None]
    out: F64 = np.where(np.isnan(y), np.nan, np.clip(y, med - clip * sigma, med + clip * sigma))
    return out


def _own_time(y: F64) -> tuple[F64, I64]:
    """Each row shifted to start on its own first present day (NaN after its span's end),
    and that first day."""
    days = y.shape[1]
    first = np.argmax(~np.isnan(y), axis=1).astype(np.int64)
    index = np.arange(days)[None, :] + first[:, None]
    moved = np.take_along_axis(y, np.minimum(index, days - 1), 1)
    out: F64 = np.where(index < days, moved, np.nan)
    return out, first


def profile(hours: npt.NDArray[np.floating[Any]], missing: npt.NDArray[np.bool_]) -> F64:
    """Each customer's usual day at its start: the mean share of the day's energy in each
    hour (or slot) over its first `START` days, (customers, slots)."""
    customers, days = missing.shape
    out = np.zeros((customers, hours.shape[2]))
    for lo in range(0, customers, BLOCK):
        gone = missing[lo : lo + BLOCK]
        first = np.argmax(~gone, axis=1)
        index = first[:, None] + np.arange(min(START, days))[None, :]
        inside = index < days
        index = np.minimum(index, days - 1)
        early = np.take_along_axis(hours[lo : lo + BLOCK], index[..., None], 1)
        total = early.sum(axis=2, keepdims=True, dtype=np.float64)
        keep = inside & ~np.take_along_axis(gone, index, 1) & (total[..., 0] > 0)
        share = np.where(keep[..., None], early / np.where(total > 0, total, 1.0), 0.0)
        out[lo : lo + BLOCK] = share.sum(1) / np.maximum(keep.sum(1), 1)[:, None]
    return out


def peers_of(shape: F64) -> I64:
    """For each customer, the `PEERS` customers (of a reference sample) whose usual day at
    their start is closest to its own, itself left out, (customers, PEERS)."""
    customers = len(shape)
    step = max(-(-customers // REFERENCE), 1)
    reference = np.arange(0, customers, step)
    k = min(PEERS, len(reference) - 1)
    if k < 1:
        return np.zeros((customers, 0), np.int64)
    ref = shape[reference]
    norms = (ref**2).sum(1)[None, :]
    out = np.empty((customers, k), np.int64)
    for lo in range(0, customers, BLOCK):
        rows = np.arange(lo, min(lo + BLOCK, customers))
        d = norms - 2.0 * shape[rows] @ ref.T  # + |row|^2, the same for the whole row
        d[reference[None, :] == rows[:, None]] = np.inf  # not one's own peer
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        out[rows] = reference[near]
    return out


def _median(x: F64) -> tuple[F64, I64]:
    """Median over axis 1 ignoring NaN, and the count of values behind it (NaN: none)."""
    ordered = np.sort(x, axis=1)  # NaN last
    n = (~np.isnan(x)).sum(axis=1)
    lo = np.maximum((n - 1) // 2, 0)[:, None]
    hi = np.maximum(n // 2, 0)[:, None]
    middle = 0.5 * (np.take_along_axis(ordered, lo, 1) + np.take_along_axis(ordered, hi, 1))
    out: F64 = np.where(n > 0, middle[:, 0], np.nan)
    return out, n


def peer_relative(y: F64, peers: I64) -> F64:
    """Each row's change since its own start less its peers' median change over the same
    number of days since theirs (customers, days; NaN where y is).

    A season is not a calendar: households whose first days looked alike (the same kind of
    household at the same time of year, `peers_of`) go through the same seasonal change over
    the weeks after, whatever their dates; a drifting register is the customer's alone.
    Days on which fewer than `MIN_PEERS` peers have data are left out (NaN): nothing says
    what the season did then.
    """
    own, first = _own_time(y)
    start, _ = _median(own[:, :START])
    own = own - start[:, None]
    days = own.shape[1]
    change = np.zeros_like(own)
    if peers.shape[1]:
        for lo in range(0, len(own), BLOCK):
            median, n = _median(own[peers[lo : lo + BLOCK]])  # (block, days)
            # Days too few peers reach say nothing about the season: left out.
            change[lo : lo + BLOCK] = np.where(n >= MIN_PEERS, median, np.nan)
    relative = own - change
    back = np.arange(days)[None, :] - first[:, None]
    moved = np.take_along_axis(relative, np.clip(back, 0, days - 1), 1)
    out: F64 = np.where((back >= 0) & ~np.isnan(y), moved, np.nan)
    return out


def _suffix(values: F64) -> F64:
    """Sums from each day to the end, (rows, days + 1), the last column 0."""
    rev = np.cumsum(values[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([rev, np.zeros((len(values), 1))], axis=1)


def ramp(
    y: F64, *, floor: float, margin: float = 0.0, min_side: int = MIN_BEFORE
) -> changepoint.Step:
    """The strongest lasting downward ramp in each row of y (t; onset; loss by the end)."""
    y = despiked(y, floor)
    rows, days = y.shape
    present = ~np.isnan(y)
    w = present.astype(np.float64)
    yy = np.where(present, y, 0.0)
    t = np.arange(days, dtype=np.float64)[None, :]
    end = changepoint.own_end(present)[:, None].astype(np.float64)
    kk = np.arange(1, days)
    k = kk[None, :].astype(np.float64)
    s1, st, stt = _suffix(w), _suffix(w * t), _suffix(w * t * t)
    sy, sty = _suffix(yy), _suffix(yy * t)
    length = np.maximum(end - k, 1.0)
    off = k - 1.0
    # g_t = (t - off) / length for t >= k: its sums from the suffix sums of t.
    sg = (st[:, kk] - off * s1[:, kk]) / length
    sgg = (stt[:, kk] - 2 * off * st[:, kk] + off**2 * s1[:, kk]) / length**2
    sgy = (sty[:, kk] - off * sy[:, kk]) / length
    n = s1[:, :1]
    sxx = sgg - sg**2 / np.maximum(n, 1.0)
    n_after = s1[:, kk]
    ok = (n - n_after >= min_side) & (n_after >= MIN_AFTER) & (k < end - 1) & (sxx > 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = (sgy - sg * sy[:, :1] / n) / sxx
        a = (sy[:, :1] - b * sg) / n
        sigma = changepoint.noise(y, floor)[:, None]
        slow = 2.0 * changepoint.wander(y, sigma[:, 0])[:, None] ** 2
        fast = np.where(ok, (-b - margin) / (sigma / np.sqrt(sxx)), -np.inf)
    # The onset is where the drift is clearest against the daily noise; its t then counts
    # the customer's own wander too (a constant there would favour the latest, steepest fit).
    best = np.argmax(fast, axis=1)
    r = np.arange(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = (-b[r, best] - margin) / np.sqrt(sigma[:, 0] ** 2 / sxx[r, best] + slow[:, 0])
    top = np.where(np.isfinite(fast[r, best]), top, -np.inf)
    found = np.isfinite(top)
    onset = (best + 1).astype(np.int64)
    with np.errstate(invalid="ignore"):  # rows without a split: -inf stays -inf
        lasting = _lasting(y, a[r, best], b[r, best], onset, end[:, 0])
        lasting *= _gradual(y, a[r, best], b[r, best], onset, end[:, 0])
        top = np.where(top > 0, top * lasting, top)
    return changepoint.Step(
        t=np.where(found, top, 0.0),
        onset=np.where(found, onset, -1).astype(np.int64),
        delta=np.where(found, -b[r, best], 0.0),
    )


def _lasting(y: F64, a: F64, b: F64, onset: I64, end: F64) -> F64:
    """Per row, at its split: 1 when the last quarter of the days after it keeps half of
    the fitted loss, falling to 0 when it keeps none."""
    days = y.shape[1]
    t = np.arange(days, dtype=np.float64)[None, :]
    present = ~np.isnan(y)
    k = onset[:, None].astype(np.float64)
    e = end[:, None]
    start = np.maximum(e - np.maximum((e - k) // 4, 3), k)
    tail = (t >= start) & (t < e) & present
    g = np.clip((t - k + 1) / np.maximum(e - k, 1), 0, 1)
    expected = np.where(tail, b[:, None] * g, 0.0).sum(1)  # the fitted change there
    kept = np.where(tail, np.nan_to_num(y) - a[:, None], 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(kept / expected, nan=0.0)
    out: F64 = np.where(tail.any(1), np.clip(share / 0.5, 0.0, 1.0), 0.0)
    return out


def _gradual(y: F64, a: F64, b: F64, onset: I64, end: F64) -> F64:
    """Per row, at its split: 1 when the first half of the days after it lost at most
    `STEP_LIKE[0]` of what the second half lost (a ramp: a third), falling to 0 at
    `STEP_LIKE[1]` (a step loses as much in both)."""
    days = y.shape[1]
    t = np.arange(days, dtype=np.float64)[None, :]
    present = ~np.isnan(y)
    k = onset[:, None].astype(np.float64)
    e = end[:, None]
    mid = k + (e - k) // 2
    loss = np.where(present, a[:, None] - np.nan_to_num(y), 0.0)
    first = present & (t >= k) & (t < mid)
    second = present & (t >= mid) & (t < e)
    with np.errstate(invalid="ignore", divide="ignore"):
        l1 = np.where(first, loss, 0.0).sum(1) / first.sum(1)
        l2 = np.where(second, loss, 0.0).sum(1) / second.sum(1)
        ratio = np.nan_to_num(l1 / l2, nan=1.0)
    lo, hi = STEP_LIKE
    out: F64 = np.where(l2 > 0, np.clip((hi - ratio) / (hi - lo), 0.0, 1.0), 1.0)
    return out
