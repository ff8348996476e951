"""A step in a daily series that lasts to the end of the window, found and scored.

Theft starts on an onset day and goes on; a holiday ends. For each customer's series y
(one value a day, NaN = missing) and each split day k the statistic is the two-sample t of
a mean shift, (mean before k - mean after k - margin) / (sigma * sqrt(1/n1 + 1/n2)) (the
likelihood ratio of one step at k with known noise), with at least `min_side` present days
before. It counts in proportion to how well the step lasts: the two halves of the days
after k and their last quarter must each keep at least `PERSIST` of the step to count
fully, and a part keeping under half of that cancels it (a dip that recovers before the
end of the series scores little). "The days after k" end at the series' own last present
day: customers whose readings start or stop on different dates are each judged on their
own span, never on the population's window. sigma
is the series' own noise, estimated robustly from day-to-day differences (so the step
itself barely moves it), pulled towards the population's typical noise (30 days give a
rough estimate: a customer whose few differences happen to be small must not turn an
ordinary wobble into a large t) and floored. The statistic of a customer is its best split.
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
POOL = 20.0  # weight of the population's typical noise, in effective day-differences
MAD_EFFICIENCY = 0.37  # a MAD weighs about as much as 37 % of its values in a variance
MIN_POOLED = 50  # rows needed to speak of a population's typical noise
MIRROR_MARGIN = 1.4  # mirror: the part of the crossing that is not evidence, x |before|
WANDER_POOL = 3.0  # weight of the population's typical wander, in effective week-differences
PERSIST = 0.5  # share of the step each later part of the window must keep to count fully


@dataclass(frozen=True)
class Step:
    """Per customer: the step's t statistic, the first day after it, and its size."""

    t: F64  # largest drop statistic (0 when no split is possible)
    onset: I64  # index of the first day after the step (-1 when none)
    delta: F64  # mean before - mean after at that split


def noise(y: F64, floor: float, *, pooled: bool = True) -> F64:
    """Robust day-to-day noise of each row: MAD of consecutive differences / sqrt 2, its
    variance pooled with the median row's (weight `POOL`) when asked and there are enough
    rows (a population, not a few customers)."""
    d = np.diff(y, axis=1)
    with warnings.catch_warnings():  # all-NaN rows (no data) are expected: they get the floor
        warnings.simplefilter("ignore", RuntimeWarning)
        mad = np.nanmedian(np.abs(d - np.nanmedian(d, axis=1, keepdims=True)), axis=1)
    sigma = MAD_TO_SD * np.nan_to_num(mad, nan=floor) / np.sqrt(2.0)
    if pooled and len(y) >= MIN_POOLED:
        weight = MAD_EFFICIENCY * np.sum(~np.isnan(d), axis=1)
        typical = np.median(sigma)
        sigma = np.sqrt((weight * sigma**2 + POOL * typical**2) / (weight + POOL))
    out: F64 = np.maximum(sigma, floor)
    return out


def wander(y: F64, sigma: F64, *, pooled: bool = True) -> F64:
    """Each row's own slow wander: the standard deviation of a week's mean level that the
    day-to-day noise `sigma` does not explain (a household whose weeks differ by a fifth
    has it). From second differences of consecutive 7-day means (MAD): a steady drift
    leaves them at 0 and a step moves two of them, so neither a theft's step nor its drift
    passes for wander. Pooled with the median row's like `noise`."""
    rows, days = y.shape
    weeks = days // 7
    if weeks < 4:
        return np.zeros(rows)
    # Weeks from each row's own first day (the population's window is not its calendar).
    first = np.argmax(~np.isnan(y), axis=1)
    index = np.arange(weeks * 7)[None, :] + first[:, None]
    own = np.where(index < days, np.take_along_axis(y, np.minimum(index, days - 1), 1), np.nan)
    block = own.reshape(rows, weeks, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.where((~np.isnan(block)).sum(2) >= 4, np.nanmean(block, axis=2), np.nan)
        d = np.diff(means, n=2, axis=1)
        mad = np.nanmedian(np.abs(d - np.nanmedian(d, axis=1, keepdims=True)), axis=1)
    spread = MAD_TO_SD * np.nan_to_num(mad) / np.sqrt(6.0)
    var = np.maximum(spread**2 - sigma**2 / 7.0, 0.0)
    if pooled and rows >= MIN_POOLED:
        weight = MAD_EFFICIENCY * np.sum(~np.isnan(d), axis=1)
        typical = np.median(var)
        var = (weight * var + WANDER_POOL * typical) / (weight + WANDER_POOL)
    out: F64 = np.sqrt(var)
    return out


def _means(cum_s: F64, cum_n: F64, lo: I64, hi: I64) -> tuple[F64, F64]:
    """Mean and count over days [lo, hi) (rows, splits) from prefix sums (rows, 1 or splits,
    days + 1): one series per row, or one per row and split."""
    rows = np.arange(len(cum_s))[:, None]
    series = np.arange(cum_s.shape[1])[None, :] if cum_s.shape[1] > 1 else 0
    n = cum_n[rows, series, hi] - cum_n[rows, series, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cum_s[rows, series, hi] - cum_s[rows, series, lo]) / n, n


def own_end(present: npt.NDArray[np.bool_]) -> I64:
    """One past the last present day of each series (last axis); 0 for a series of NaN."""
    days = present.shape[-1]
    last = days - np.argmax(present[..., ::-1], axis=-1)
    out: I64 = np.where(present.any(axis=-1), last, 0).astype(np.int64)
    return out


def _splits(
    y: F64,
    floor: float,
    min_side: int,
    min_half: int,
    margin: float,
    mirror: bool = False,
    pooled: bool = True,
) -> tuple[F64, F64, F64]:
    """The lasting-step statistic, the step's size and the statistic that picks the onset
    at every split (rows, days - 1).

    y is (rows, days), or (rows, days - 1, days) with its own series for each split.
    `mirror`: the change flips the series' sign (0 is the midpoint between the two
    behaviours), so a drop counts only as far as it crosses 0, past a margin of
    `MIRROR_MARGIN` of the value before (days that merely lose their shape sit near 0):
    min(step, -2 * after - MIRROR_MARGIN * |before|).
    """
    days = y.shape[-1]
    y3 = y[:, None, :] if y.ndim == 2 else y
    rows = len(y3)
    present = ~np.isnan(y3)
    zero = np.zeros((*y3.shape[:2], 1))
    cum_s = np.concatenate([zero, np.cumsum(np.where(present, y3, 0.0), axis=2)], axis=2)
    cum_n = np.concatenate([zero, np.cumsum(present, axis=2, dtype=np.float64)], axis=2)
    split = np.arange(1, days)[None, :].repeat(rows, 0)
    # Each series is judged on its own span: the days after a split run to its own last
    # reading, not to the end of everyone's window (data that stop early, or a population
    # whose customers start on different dates, must not hide a lasting step).
    end = np.broadcast_to(own_end(present), split.shape).astype(np.int64)
    mid = split + (end - split + 1) // 2
    # The tail: the last quarter of the days after the split (at least min_half days).
    tail_start = np.maximum(end - np.maximum((end - split) // 4, min_half), mid)
    before, n_before = _means(cum_s, cum_n, np.zeros_like(split), split)
    after, n_after = _means(cum_s, cum_n, split, end)
    parts = [
        _means(cum_s, cum_n, lo, hi) for lo, hi in ((split, mid), (mid, end), (tail_start, end))
    ]
    sigma = noise(y3.reshape(-1, days), floor, pooled=pooled).reshape(y3.shape[:2])
    ok = (n_before >= min_side) & (parts[0][1] >= min_half) & (parts[1][1] >= min_half)
    ok &= parts[2][1] >= 1

    def size(mean: F64, mirror_margin: float) -> F64:
        drop = before - mean - margin
        if not mirror:
            return drop
        return np.minimum(drop, -2.0 * mean - mirror_margin * np.abs(before))

    def lasting_t(mirror_margin: float) -> F64:
        with np.errstate(invalid="ignore", divide="ignore"):
            step = size(after, mirror_margin)
            t = step / (sigma * np.sqrt(1.0 / n_before + 1.0 / n_after))
            kept = np.min([size(m, mirror_margin) for m, _ in parts], axis=0)
            share = kept / np.where(step > 0, step, np.inf)
            lasting = np.clip((share - PERSIST / 2) / (PERSIST / 2), 0.0, 1.0)
        out: F64 = np.where(ok, np.where(t > 0, t * lasting, t), -np.inf)
        return out

    t = lasting_t(MIRROR_MARGIN)
    # The mirror's margin grows with |before|, which later splits (their "before" holding
    # reversed days) make smaller: the onset is where the crossing is clearest without it.
    pick = lasting_t(0.0) if mirror else t
    return t, np.nan_to_num(before - after), pick


def _best(t: F64, delta: F64, pick: F64 | None = None) -> Step:
    """The split with the largest statistic in each row (-inf where no split is allowed),
    or with the largest `pick` when given."""
    best = np.argmax(t if pick is None else pick, axis=1)
    rows = np.arange(len(t))
    top = t[rows, best]
    found = np.isfinite(top)
    return Step(
        t=np.where(found, top, 0.0),
        onset=np.where(found, best + 1, -1).astype(np.int64),
        delta=np.where(found, delta[rows, best], 0.0),
    )


def drop(
    y: F64,
    *,
    floor: float,
    min_side: int = MIN_BEFORE,
    min_half: int = 2,
    margin: float = 0.0,
) -> Step:
    """The largest lasting drop in each row of y (customers, days); rows of NaN give 0.

    Lasting: the days after the split are cut in two halves (each at least `min_half`
    present days) and the drop must keep `PERSIST` of its size in both and in the last
    quarter of them, so a dip that recovers before the end of the window (a holiday) scores
    little. `margin`: the part of the drop that is not yet evidence (an effect size too
    small to matter, e.g. 10 % of consumption); only what exceeds it counts.
    """
    t, delta, _ = _splits(y, floor, min_side, min_half, margin)
    return _best(t, delta)


def split_drops(
    y: F64, *, floor: float, min_side: int = MIN_BEFORE, min_half: int = 2, mirror: bool = False
) -> Step:
    """As `drop`, with a series of its own for each split: y is (rows, days - 1, days) and
    y[:, k - 1] is the series that tests a step before day k (say, each day compared with a
    template learnt from the days before k). `mirror`: see `_splits`. Each series keeps its
    own noise (no pooling: the rows are one customer's splits, not a population)."""
    t, delta, pick = _splits(y, floor, min_side, min_half, 0.0, mirror, pooled=False)
    return _best(t, delta, pick)


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
