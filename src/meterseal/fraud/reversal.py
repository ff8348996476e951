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
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterseal.fraud import changepoint

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
FLOOR = 0.05  # noise floor of r (correlation units)


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
