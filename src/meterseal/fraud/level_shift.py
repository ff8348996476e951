"""Where a customer's readings sit: a register that counts a share moves them all.

A household's appliances draw fixed powers (standby, a fridge's cycle, a water heater), so
its readings pile up at a few levels. Using them more or less (a season, a holiday, a new
habit) makes the piles grow or shrink where they are; a register that counts only a share
of the energy (scaled readings, a drifting register) moves every pile by the same factor.
So the histogram of a customer's log readings after a split day is compared with the one
before it, each half of the days after separately: the shift that matches them best, how
well they then match and how much better than unshifted. A lasting drop moves both halves
down; the statistic is the smaller of the two drops, counted as far as the shifted piles
agree (an honest change of habits leaves a poor best match) and the shift improves the match
(a shift that barely helps is the histogram's own wobble). Per customer, no population:
it is computed chunk by chunk and the customer's calendar and season do not enter it.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
BIN = 0.05  # log units: a histogram bin is a 5 % step of a reading
BINS = 128
LOWEST = -3.2  # log of a reading relative to the customer's median reading, first bin
PAD = 256  # FFT length: two histograms' width, so no shift wraps around
SHIFTS = np.arange(-40, 11)  # bins tried: readings down to e^-2 (-86 %) or up by 65 %
SMOOTH_BINS = 1.0  # Gaussian smoothing of a histogram (sd, bins): a pile spans a few bins
MIN_SIDE = 7  # days before a split and after it
SPLIT_EVERY = 2  # days between the splits tried
AGREE_FROM, AGREE_SPAN = 0.7, 0.15  # a best match of 0.7 counts nothing, of 0.85 fully
GAIN_FULL = 0.1  # a shift that improves the match by 0.1 counts fully
T_PER_LOG = 10.0  # t-like units per log unit of drop (a 10 % drop: about 1)
TIE_BREAK = 1e-3  # weight of the match in choosing among splits of one drop
MIN_SLOTS = 24  # readings a day: coarser ones (daily totals, SGCC) hold no appliance levels


def _kernel() -> npt.NDArray[np.complex128]:
    """The smoothing kernel's transform (centred at bin 0, wrapped)."""
    offsets = np.arange(-3, 4)
    weights = np.exp(-0.5 * (offsets / SMOOTH_BINS) ** 2)
    g = np.zeros(PAD)
    g[offsets % PAD] = weights / weights.sum()
    return np.fft.rfft(g)


KERNEL = _kernel()


def histograms(energy: F64) -> F32:
    """Counts of each day's log readings relative to the customer's median reading,
    (customers, days, BINS); zero and missing readings are left out (zeroed windows have
    detectors of their own)."""
    c, d, _ = energy.shape
    positive = np.where(energy > 0, energy, np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # A customer without a positive reading is expected (no data, or a zeroed register):
        # its median is NaN, so none of its readings fall in a bin.
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(positive.reshape(c, -1), axis=1) if positive.size else np.zeros(c)
        z = np.log(positive / median[:, None, None])
        index = np.floor((z - LOWEST) / BIN)
    inside = np.isfinite(index) & (index >= 0) & (index < BINS)
    # One flat bin per (customer, day, level): a bincount, far faster than np.add.at.
    day_bin = np.arange(c * d, dtype=np.int64).reshape(c, d, 1) * BINS
    flat = (day_bin + np.where(inside, index, 0).astype(np.int64))[inside]
    counts = np.bincount(flat, minlength=c * d * BINS)
    out: F32 = counts.reshape(c, d, BINS).astype(np.float32)
    return out


def _smoothed(h: F64) -> F64:
    """Histograms (rows, BINS) smoothed, zero beyond their bins."""
    out: F64 = np.fft.irfft(np.fft.rfft(h, PAD) * KERNEL, PAD)[:, :BINS]
    return out


def prepared(h: F64) -> tuple[npt.NDArray[np.complex128], F64]:
    """Histograms (rows, BINS) smoothed, as their transform and squared norm (`aligned_with`)."""
    smooth = _smoothed(h)
    return np.fft.rfft(smooth, PAD), (smooth**2).sum(1)


def align(before: F64, after: F64) -> tuple[F64, F64, F64]:
    """Per row: the shift of `after` against `before` that matches best (log units, < 0:
    lower), the match then (cosine of the smoothed histograms) and its gain over no shift."""
    return aligned_with(prepared(before), after)


def aligned_with(
    before: tuple[npt.NDArray[np.complex128], F64], after: F64
) -> tuple[F64, F64, F64]:
    """`align` against a `prepared` `before` (the histograms after one split share it)."""
    fb, b2 = before
    fa, a2 = prepared(after)
    norm = np.sqrt(b2 * a2) + 1e-12
    cross = np.fft.irfft(np.conj(fb) * fa, PAD)
    match = cross[:, SHIFTS % PAD] / norm[:, None]  # match[s] = sum_i b[i] a[i + s]
    best = np.argmax(match, axis=1)
    rows = np.arange(len(match))
    top = match[rows, best]
    unshifted = match[:, int(np.flatnonzero(SHIFTS == 0)[0])]
    return SHIFTS[best] * BIN, top, top - unshifted


def _between(cum: F32, lo: I64, hi: I64) -> F64:
    """Each row's histogram of days [lo, hi) from running counts (C, D + 1, BINS)."""
    rows = np.arange(len(cum))
    out: F64 = (cum[rows, hi] - cum[rows, lo]).astype(np.float64)
    return out


def level_drop(hists: F32) -> changepoint.Step:
    """The lasting drop of the levels each customer's readings sit at (t-like; onset; drop
    in log units), from its days' histograms (`histograms`)."""
    c, d, _ = hists.shape
    present = hists.sum(axis=2) > 0
    # Running counts in float32, summed in place: a (C, D + 1, BINS) array is the detector's
    # largest (a long window's, or the SGCC layout's weeks, chunk by chunk). Counts of
    # readings are whole numbers, exact in float32 below 2**24 a customer and level.
    cum = np.zeros((c, d + 1, BINS), np.float32)
    np.cumsum(hists, axis=1, dtype=np.float32, out=cum[:, 1:])
    # Days with readings up to each day: a gap in the data is no day of evidence.
    count = np.concatenate([np.zeros((c, 1), np.int64), np.cumsum(present, axis=1)], 1)
    first = np.argmax(present, axis=1)
    end = changepoint.own_end(present)
    rows = np.arange(c)
    enough = present.sum(axis=1) >= 2 * MIN_SIDE + 2
    key, best, drop, onset = np.zeros(c), np.zeros(c), np.zeros(c), np.full(c, -1, np.int64)
    for j in range(max((d - 2 * MIN_SIDE + SPLIT_EVERY - 1) // SPLIT_EVERY, 0)):
        k = first + MIN_SIDE + SPLIT_EVERY * j
        ok = enough & (k < end - MIN_SIDE)
        if not ok.any():
            continue
        k = np.minimum(k, d)
        mid = k + (end - k) // 2
        # Counted in days with readings (a gap is no evidence): MIN_SIDE before the split
        # and at least half of MIN_SIDE + 1 in each half after it, as the span gives a
        # customer without gaps.
        ok &= count[rows, k] - count[rows, first] >= MIN_SIDE
        ok &= (
            np.minimum(count[rows, mid] - count[rows, k], count[rows, end] - count[rows, mid])
            >= (MIN_SIDE + 1) // 2
        )
        before = prepared(_between(cum, first, k))
        s1, m1, g1 = aligned_with(before, _between(cum, k, mid))
        s2, m2, g2 = aligned_with(before, _between(cum, mid, end))
        size = np.where(ok & (s1 < 0) & (s2 < 0), -np.maximum(s1, s2), 0.0)
        agree = np.clip((np.minimum(m1, m2) - AGREE_FROM) / AGREE_SPAN, 0.0, 1.0)
        value = size * agree * np.clip(np.minimum(g1, g2) / GAIN_FULL, 0.0, 1.0)
        # The clearest drop; among splits that show it alike (a few days of the other side
        # barely blur a histogram), the one whose shifted halves match best: the onset.
        this = value + TIE_BREAK * np.minimum(m1, m2) * (value > 0)
        better = this > key
        key = np.where(better, this, key)
        best = np.where(better, value, best)
        drop = np.where(better, size, drop)
        onset = np.where(better, k, onset)
    return changepoint.Step(t=T_PER_LOG * best, onset=onset, delta=drop)
