"""A step in a daily series that lasts to the end of the window, found and scored.

Theft starts on an onset day and goes on; a holiday ends. For each customer's series y
(one value a day, NaN = missing) the statistic is the largest two-sample t over the split
days k of (mean before k - mean after k) / (sigma * sqrt(1/n1 + 1/n2)), taken as the smaller
of the t for the first and the second half of the days after k (the step must last), with at
least `min_side` present days before and after. sigma is the series' own noise, estimated robustly
from day-to-day differences (so the step itself barely moves it) and floored, so that a
perfectly steady series does not turn a tiny step into a huge one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MAD_TO_SD = 1.4826
MIN_BEFORE = 5  # days of history before a split: fewer make a baseline out of noise


@dataclass(frozen=True)
class Step:
    """Per customer: the step's t statistic, the first day after it, and its size."""

    t: F64  # largest drop statistic (0 when no split is possible)
    onset: I64  # index of the first day after the step (-1 when none)
    delta: F64  # mean before - mean after at that split


def noise(y: F64, floor: float) -> F64:
    """Robust day-to-day noise of each row: MAD of consecutive differences / sqrt 2."""
    d = np.diff(y, axis=1)
    with warnings.catch_warnings():  # all-NaN rows (no data) are expected: they get the floor
        warnings.simplefilter("ignore", RuntimeWarning)
        mad = np.nanmedian(np.abs(d - np.nanmedian(d, axis=1, keepdims=True)), axis=1)
    sigma = MAD_TO_SD * np.nan_to_num(mad, nan=floor) / np.sqrt(2.0)
    out: F64 = np.maximum(sigma, floor)
    return out


def _means(cum_s: F64, cum_n: F64, lo: I64, hi: I64) -> tuple[F64, F64]:
    """Mean and count of each row over days [lo, hi) from prefix sums (leading 0 column)."""
    rows = np.arange(len(cum_s))[:, None]
    n = cum_n[rows, hi] - cum_n[rows, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cum_s[rows, hi] - cum_s[rows, lo]) / n, n


@dataclass(frozen=True)
class _Splits:
    """t statistics of every split (rows, days - 1): before vs each half of after."""

    first: F64
    last: F64
    tail: F64
    ok: npt.NDArray[np.bool_]
    delta: F64


def _splits(y: F64, floor: float, min_side: int, min_half: int, margin: float) -> _Splits:
    rows, days = y.shape
    present = ~np.isnan(y)
    zero = np.zeros((rows, 1))
    cum_s = np.hstack([zero, np.cumsum(np.where(present, y, 0.0), axis=1)])
    cum_n = np.hstack([zero, np.cumsum(present, axis=1, dtype=np.float64)])
    split = np.arange(1, days)[None, :].repeat(rows, 0)
    mid = split + (days - split + 1) // 2
    end = np.full_like(split, days)
    before, n_before = _means(cum_s, cum_n, np.zeros_like(split), split)
    after, _ = _means(cum_s, cum_n, split, end)
    first, n_first = _means(cum_s, cum_n, split, mid)
    last, n_last = _means(cum_s, cum_n, mid, end)
    # The tail: the last quarter of the days after the split (at least min_half days).
    tail_start = np.minimum(end - np.maximum((days - split) // 4, min_half), mid)
    tail, n_tail = _means(cum_s, cum_n, tail_start, end)
    sigma = noise(y, floor)[:, None]
    ok = (n_before >= min_side) & (n_first >= min_half) & (n_last >= min_half)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_first = (before - first - margin) / (sigma * np.sqrt(1.0 / n_before + 1.0 / n_first))
        t_last = (before - last - margin) / (sigma * np.sqrt(1.0 / n_before + 1.0 / n_last))
        t_tail = (before - tail - margin) / (sigma * np.sqrt(1.0 / n_before + 1.0 / n_tail))
    ok &= n_tail >= 1
    return _Splits(t_first, t_last, t_tail, ok, np.nan_to_num(before - after))


def _best(t: F64, delta: F64) -> Step:
    """The split with the largest statistic in each row (-inf where no split is allowed)."""
    best = np.argmax(t, axis=1)
    rows = np.arange(len(t))
    top = t[rows, best]
    found = np.isfinite(top)
    return Step(
        t=np.where(found, top, 0.0),
        onset=np.where(found, best + 1, -1).astype(np.int64),
        delta=np.where(found, delta[rows, best], 0.0),
    )


def drop(
    y: F64, *, floor: float, min_side: int = MIN_BEFORE, min_half: int = 2, margin: float = 0.0
) -> Step:
    """The largest lasting drop in each row of y (customers, days); rows of NaN give 0.

    Lasting: the days after the split are cut in two halves and the drop must show in both
    and in the last quarter of them (the smallest t counts; each half at least `min_half`
    present days), so a dip that recovers before the end of the window (a holiday) scores
    little.
    `margin`: the part of the drop that is not yet evidence (an effect size too small to
    matter, e.g. 10 % of consumption); only what exceeds it counts.
    """
    s = _splits(y, floor, min_side, min_half, margin)
    t = np.minimum(np.minimum(s.first, s.last), s.tail)
    return _best(np.where(s.ok, t, -np.inf), s.delta)


def either(y: F64, *, floor: float, min_side: int = MIN_BEFORE, margin: float = 0.0) -> Step:
    """The largest lasting change in either direction (t is its absolute value)."""
    down = drop(y, floor=floor, min_side=min_side, margin=margin)
    up = drop(-y, floor=floor, min_side=min_side, margin=margin)
    pick = up.t > down.t
    return Step(
        t=np.where(pick, up.t, down.t),
        onset=np.where(pick, up.onset, down.onset),
        delta=np.where(pick, -up.delta, down.delta),
    )
