"""A register that drifts: consumption losing a growing share from an onset day on.

For each customer's daily series y (NaN = missing) and each split k, a least-squares fit
over the customer's own present days of y_t = a + b * g_k(t), where g_k is 0 before k and
rises linearly to 1 at the customer's own last day. The statistic is the t of -b beyond a
margin, (-b - margin) / se(b), with se from the series' robust day-to-day noise
(`changepoint.noise`) plus its own week-to-week wander (`changepoint.wander`): a household
whose weeks differ anyway needs a larger drift to count. The last quarter of the days
after k must still show half of the loss the fit puts there (a dip that recovered is no
drift). Every split costs a few suffix sums.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MIN_AFTER = 6  # present days after the split


def _suffix(values: F64) -> F64:
    """Sums from each day to the end, (rows, days + 1), the last column 0."""
    rev = np.cumsum(values[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([rev, np.zeros((len(values), 1))], axis=1)


def ramp(y: F64, *, floor: float, margin: float = 0.0, min_side: int = 5) -> changepoint.Step:
    """The strongest lasting downward ramp in each row of y (t; onset; loss by the end)."""
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
