"""A window of each day bypassed: its hours lose most of their energy, the rest keep theirs.

A heavy appliance wired around the meter (or a meter bridged for some hours each day)
removes a window of hours from every day from an onset on, and nothing else: the other
hours' energy stays what it was. The test compares each customer's own hour-of-day
profile after a split day with the profile before it (`profile_drop`): a block of 3 to 8
contiguous hours (wrapping past midnight) that fell far, in both halves of the days after
the split, while the day's other hours held, scored against how much the customer's whole
profile moved. A profile is the customer's own: a daily rhythm shifted by an hour or two,
a time zone or the calendar dates it covers change nothing; a season or a new routine
moves many hours by a little, a bypass a few hours by a lot. Daily data (fewer than 24
slots a day, or slots that do not make whole hours) has no window: 0 for everyone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint

F64 = npt.NDArray[np.float64]
LENGTHS = (3, 4, 5, 6, 7, 8)  # hours: every window length the test tries
MARGIN = 0.7  # log units: a window losing under half its energy is not evidence
FLOOR = 0.1  # log units: the least spread of a profile's hourly changes
EPS = 0.05  # an hour's energy is compared with this share of the customer's typical hour added
REST_SCALE = 0.7  # log units: a rest of the day that gained this much kept nothing
MIN_HALF = 3  # present days in each half of the days after a split
T_PER_Z = 4.0  # the z in the t-like units of the other features (chosen on uci-tuning)
MAD_TO_SD = 1.4826
BLOCK = 200  # customers at once (their arrays: BLOCK x splits x windows)


def profile_drop(hours: F64, missing: npt.NDArray[np.bool_]) -> changepoint.Step:
    """Per customer, the z of its best bypassed window in the hour-of-day profile.

    At every split day k, each hour's mean energy after k against before k, in logs
    (d_h); the window's d is the weaker of the two halves of the days after k (a bypass
    lasts). The window's drop beyond `MARGIN`, below the rest of the day's (its median d,
    counted only when it fell: a rest that rose is no evidence), over the spread of d
    across the day (1.4826 MAD, floored at `FLOOR`): a bypass takes a block of
    hours down to almost nothing and leaves the others where they were, while a household
    that changed its routine or lives another season moves many hours by less. Windows of
    `LENGTHS` hours, starting on every hour and wrapping past midnight: the
    customer's own rhythm, shifted or not, is the reference.
    """
    customers, days, slots = hours.shape
    t_out = np.zeros(customers)
    onset_out = np.full(customers, -1, np.int64)
    delta_out = np.zeros(customers)
    if slots < 24 or slots % 24 or days < 2:  # no hours to tell a window by
        return changepoint.Step(t_out, onset_out, delta_out)
    for lo in range(0, customers, BLOCK):
        step = _profile_block(hours[lo : lo + BLOCK], missing[lo : lo + BLOCK])
        t_out[lo : lo + len(step.t)] = step.t
        onset_out[lo : lo + len(step.t)] = step.onset
        delta_out[lo : lo + len(step.t)] = step.delta
    return changepoint.Step(t_out, onset_out, delta_out)


def _profile_block(hours: F64, missing: npt.NDArray[np.bool_]) -> changepoint.Step:
    """`profile_drop` for one block of customers (every split at once)."""
    rows, days, slots = hours.shape
    present = ~missing
    h = np.where(present[..., None], hours.reshape(rows, days, 24, slots // 24).sum(-1), 0.0)
    count = present.sum(1)
    typical = h.sum((1, 2)) / np.maximum(count, 1) / 24
    zero = np.zeros((rows, 1, 24))
    cum = np.concatenate([zero, np.cumsum(h, 1)], 1)
    cum_n = np.concatenate([zero[..., 0], np.cumsum(present, 1, dtype=np.float64)], 1)
    split = np.arange(1, days)[None, :].repeat(rows, 0)
    end = changepoint.own_end(present)[:, None].repeat(days - 1, 1)
    mid = np.minimum(split + (end - split + 1) // 2, days)
    r = np.arange(rows)[:, None]
    eps = EPS * typical[:, None, None] + 1e-12

    def mean(lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64]) -> tuple[F64, F64]:
        n = cum_n[r, hi] - cum_n[r, lo]
        out: F64 = (cum[r, hi] - cum[r, lo]) / np.maximum(n, 1)[..., None]
        return out, n

    before, n_before = mean(np.zeros_like(split), split)
    first, n_first = mean(split, mid)
    second, n_second = mean(mid, end)
    whole, _ = mean(split, end)
    log_before = np.log(before + eps)
    d = np.log(whole + eps) - log_before
    centre = np.median(d, axis=2)
    spread = np.maximum(MAD_TO_SD * np.median(np.abs(d - centre[..., None]), axis=2), FLOOR)
    inside = np.maximum(
        _window_means(np.log(first + eps) - log_before),
        _window_means(np.log(second + eps) - log_before),
    )
    # The rest of the day must not have gained what the window lost (a routine moved).
    rest_before = before.sum(-1, keepdims=True) - _window_means(before) * _lengths()
    rest_after = whole.sum(-1, keepdims=True) - _window_means(whole) * _lengths()
    gained = np.log((rest_after + 24 * eps) / (rest_before + 24 * eps))
    kept = np.clip(1.0 - np.maximum(gained, 0.0) / REST_SCALE, 0.0, 1.0)
    drop = np.minimum(centre, 0.0)[..., None] - inside - MARGIN
    z_all = np.where(drop > 0, drop * kept, drop) / spread[..., None]
    pick = np.argmax(z_all, axis=-1)
    z = np.take_along_axis(z_all, pick[..., None], -1)[..., 0]
    size = np.take_along_axis(np.minimum(centre, 0.0)[..., None] - inside, pick[..., None], -1)[
        ..., 0
    ]
    ok = (n_before >= changepoint.MIN_BEFORE) & (n_first >= MIN_HALF) & (n_second >= MIN_HALF)
    z = np.where(ok, z, -np.inf)
    best = np.argmax(z, axis=1)
    top = z[np.arange(rows), best]
    found = np.isfinite(top)
    return changepoint.Step(
        np.where(found, T_PER_Z * top, 0.0),
        np.where(found, best + 1, -1).astype(np.int64),
        np.where(found, size[np.arange(rows), best], 0.0),
    )


def _lengths() -> F64:
    """The length of each window `_window_means` gives, in hours."""
    return np.repeat(np.asarray(LENGTHS, np.float64), 24)


def _window_means(d: F64) -> F64:
    """Mean of d over every window of `LENGTHS` hours (..., 24 starts x lengths)."""
    wrapped = np.concatenate([d, d], axis=-1)
    zero = np.zeros((*d.shape[:-1], 1))
    cum = np.concatenate([zero, np.cumsum(wrapped, axis=-1)], axis=-1)
    means = [(cum[..., n : n + 24] - cum[..., :24]) / n for n in LENGTHS]
    out: F64 = np.concatenate(means, axis=-1)
    return out
