"""Reversed days, measured against the customer's own days before a candidate onset.

A thief who reverses the day sends x_{T+1-t}: the day keeps its energy and its values, only
their order in time changes. Against the population's usual shape the change is weak for a
household whose days are nearly symmetric or unusual; against the customer's own days it is
plain: from the onset on, each day matches the customer's earlier days *reversed in time*
better than it matches them as they were.

For each candidate onset k the template is the sum of the customer's standardised daily
curves before k; each day d gets r_d = corr(day d, reversed template) - corr(day d,
template) (days before k are left out of their own template). Honest days give r < 0 and
reversed days the mirror value r > 0; `changepoint.split_drops` then scores a lasting rise
of r at k that crosses 0 (`mirror`): a new appliance or an absence makes days match their
template less, drawing r towards 0, but does not reverse them. All of it comes from two
Gram matrices of the customer's days (days x days), so every onset costs one prefix sum.

`profile_mirror` asks the same of the customer's hour-of-day profile, its days averaged
before and after a split: an irregular household's single days barely resemble its own
template, while its profile still holds its rhythm. It is a feature, not the ensemble's
detector: a household whose one daily peak moves between the night and the evening with a
season mirrors its profile honestly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
FLOOR = 0.05  # noise floor of r (correlation units)
MIN_PROFILE = 12  # readings a day for an hour-of-day profile to mirror
PROFILE_EVERY = 2  # days between the splits tried
# Days with readings before a split and in each half of the days after it, and the m that
# counts nothing, for profiles of many days and of few (a short window, a late or early
# onset): m of honest households reaches 0.4 for one in a hundred of the tuning set's
# (10 and 5 days), 0.7 for one in a thousand (5 and 2 days: few days make a rougher profile).
PROFILES = ((10, 5, 0.4), (5, 2, 0.7))
T_PER_MIRROR = 10.0  # t-like units per unit of m beyond it


def reversal_series(z: F64, usable: B) -> F64:
    """r for every onset k = 1..D-1 and day d, (customers, D - 1, D); NaN on unusable days.

    z: standardised daily curves (customers, D, slots), rows of mean 0 and sd 1.
    """
    days, slots = z.shape[1:]
    zz = np.where(usable[..., None], z, 0.0)
    gram = np.einsum("cdh,ceh->cde", zz, zz) / slots  # corr(day d, day e)
    mirror = np.einsum("cdh,ceh->cde", zz, zz[..., ::-1]) / slots  # corr(d, e reversed)
    fwd = np.cumsum(gram, axis=2)[:, :, :-1]  # (C, D, K): day d . template of days < k
    rev = np.cumsum(mirror, axis=2)[:, :, :-1]
    onsets = np.arange(days - 1)
    norm = np.cumsum(np.cumsum(gram, axis=1), axis=2)[:, onsets, onsets]  # |template|^2
    own = (np.arange(days)[:, None] <= onsets[None, :])[None]  # day d < k is in the template
    self_fwd = np.einsum("cdd->cd", gram)[..., None]  # a day's share of its own template
    self_rev = np.einsum("cdd->cd", mirror)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        size = norm[:, None, :] - own * (2.0 * fwd - self_fwd)
        r = ((rev - own * self_rev) - (fwd - own * self_fwd)) / np.sqrt(size)
    r = np.where(usable[..., None] & (size > 1e-6), r, np.nan)
    out: F64 = r.transpose(0, 2, 1)
    return out


def reversal_step(z: F64, usable: B) -> changepoint.Step:
    """The best lasting onset of reversed days for each customer (t of the rise of r)."""
    return changepoint.split_drops(-reversal_series(z, usable), floor=FLOOR, mirror=True)


def _standardised(profile: F64) -> F64:
    """Hour-of-day profiles (rows, hours) of mean 0 and sd 1 (a flat one stays 0)."""
    centred = profile - profile.mean(axis=-1, keepdims=True)
    sd = np.sqrt((centred**2).mean(axis=-1, keepdims=True))
    out: F64 = np.where(sd > 1e-12, centred / np.where(sd > 1e-12, sd, 1.0), 0.0)
    return out


def profile_mirror(hours: F64, present: B) -> changepoint.Step:
    """Each customer's hour-of-day profile after a split, against its profile before it
    reversed in time (t-like; onset; the mirror statistic m there).

    hours: energy per hour of each day (customers, days, hours); present: days with
    readings. A day's readings reversed make the profile of the days after the onset the
    mirror of the one before: m = corr(after, reversed before) - corr(after, before) is
    near -1 for a household whose days keep their rhythm and near +1 for reversed days,
    while a season or a new routine changes the profile without mirroring it. Averaged
    over days, the profile holds the customer's rhythm far better than any one day does
    (`reversal_step` judges days one by one). Both halves of the days after the split must
    be mirrored (the smaller m counts); the value is `T_PER_MIRROR` * (m - margin) at the
    best split, its margin set by how many days the profiles hold (`PROFILES`). Nothing
    for fewer than `MIN_PROFILE` readings a day.
    """
    c, _, h = hours.shape
    out = changepoint.Step(np.zeros(c), np.full(c, -1, np.int64), np.zeros(c))
    if h < MIN_PROFILE:
        return out
    held = np.where(present[..., None], np.nan_to_num(hours), 0.0)
    cum = np.concatenate([np.zeros((c, 1, h)), np.cumsum(held, axis=1)], axis=1)
    count = np.concatenate([np.zeros((c, 1)), np.cumsum(present, axis=1)], axis=1)
    t = np.full(c, -np.inf)
    for before, half, margin in PROFILES:
        m, onset = _mirrored(cum, count, present, before, half)
        value = T_PER_MIRROR * (m - margin)
        better = value > t
        t = np.where(better, value, t)
        out = changepoint.Step(
            np.where(better, value, out.t),
            np.where(better, onset, out.onset),
            np.where(better, m, out.delta),
        )
    return changepoint.Step(np.where(np.isfinite(t), out.t, 0.0), out.onset, out.delta)


def _mirrored(cum: F64, count: F64, present: B, before: int, half: int) -> tuple[F64, I64]:
    """Per customer, the largest m over splits with at least `before` days with readings
    before and `half` in each half after (-inf: no such split), and that split."""
    c, d = present.shape
    first = np.argmax(present, axis=1)
    end = changepoint.own_end(present)
    rows = np.arange(c)
    best, onset = np.full(c, -np.inf), np.full(c, -1, np.int64)
    for j in range(max((d - before) // PROFILE_EVERY, 0)):
        k = np.minimum(first + before + PROFILE_EVERY * j, d)
        mid = k + (end - k) // 2
        ok = (count[rows, k] - count[rows, first] >= before) & (k < end)
        ok &= (
            np.minimum(count[rows, mid] - count[rows, k], count[rows, end] - count[rows, mid])
            >= half
        )
        if not ok.any():
            continue
        profile = _standardised(cum[rows, k] - cum[rows, first])
        mirrored = profile[:, ::-1]
        halves = []
        for lo, hi in ((k, mid), (mid, end)):
            after = _standardised(cum[rows, hi] - cum[rows, lo])
            halves.append((after * mirrored).mean(axis=1) - (after * profile).mean(axis=1))
        m = np.where(ok, np.minimum(*halves), -np.inf)
        better = m > best
        best = np.where(better, m, best)
        onset = np.where(better, k, onset)
    return best, onset
