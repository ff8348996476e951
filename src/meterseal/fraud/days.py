"""Per-day summaries of each customer's readings (vectorised over customers and days).

Missing values: a day missing more than `MAX_MISSING` of its slots is missing as a whole
(NaN in every summary, left out of every statistic); a day missing fewer has its gaps filled
with the mean of its present slots. Summaries are in the customer's own units (kWh).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
MAX_MISSING = 0.1
BASE_QUANTILE = 0.1
ZERO_SHARE = 0.02  # a reading below 2 % of the customer's median reading counts as zero
LOG_SHARE = 0.05  # logs of readings are taken of reading + 5 % of the customer's median one


@dataclass(frozen=True)
class DaySummaries:
    """(customers, days) arrays; NaN on missing days."""

    missing: B
    total: F64  # kWh in the day
    base: F64  # 10th percentile of the day's readings: the standby load
    cv: F64  # standard deviation / mean of the day's readings (0: flat)
    lag1: F64  # lag-1 autocorrelation of the day's readings (smoothness)
    zero_run: F64  # longest run of zero readings, as a share of the day
    log_level: F64  # mean of log(reading + LOG_SHARE * the customer's median reading)
    log_spread: F64  # standard deviation of those logs over the day
    filled: F64  # the readings with small gaps filled (customers, days, slots)


def fill_days(energy: F64) -> tuple[F64, B]:
    """Readings with small gaps filled by the day's mean; which days are missing."""
    gaps = np.isnan(energy)
    share = gaps.mean(axis=-1)
    missing = share > MAX_MISSING
    with np.errstate(invalid="ignore"):
        means = np.nanmean(np.where(gaps.all(-1, keepdims=True), 0.0, energy), axis=-1)
    filled = np.where(gaps, means[..., None], energy)
    filled[missing] = 0.0
    return filled, missing


def _longest_run(flags: B) -> F64:
    """Longest run of True along the last axis, as a share of its length."""
    counts = np.cumsum(flags, axis=-1, dtype=np.int32)
    reset = np.maximum.accumulate(np.where(flags, 0, counts), axis=-1)
    longest: F64 = (counts - reset).max(axis=-1) / flags.shape[-1]
    return longest


def summarise(energy: F64) -> DaySummaries:
    """Per-day summaries of readings (customers, days, slots) in kWh, NaN = missing."""
    filled, missing = fill_days(energy)
    slots = filled.shape[-1]
    total = filled.sum(-1)
    k = max(int(BASE_QUANTILE * slots) - 1, 0)
    base = np.partition(filled, k, axis=-1)[..., k]
    mean = total / slots
    centred = filled - mean[..., None]
    var = (centred**2).mean(-1)
    sd = np.sqrt(var)
    cv = np.divide(sd, mean, out=np.zeros_like(sd), where=mean > 0)
    cov1 = (centred[..., 1:] * centred[..., :-1]).mean(-1) if slots > 1 else np.zeros_like(var)
    lag1 = np.divide(cov1, var, out=np.ones_like(var), where=var > 1e-12)
    present = np.where(missing[..., None], np.nan, filled)
    with warnings.catch_warnings():  # customers without a single reading are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = np.nanmedian(present.reshape(len(filled), -1), axis=1)
    typical = np.nan_to_num(typical)
    zero_run = _longest_run(filled <= (typical * ZERO_SHARE)[:, None, None])
    # A register that scales every reading shifts every log by the same amount: the day's
    # mean log moves, their spread does not (an absence or a zeroed window changes both).
    logs = np.log(filled + np.maximum(typical * LOG_SHARE, 1e-9)[:, None, None])
    log_level = logs.mean(-1)
    log_spread = logs.std(-1)
    out = DaySummaries(missing, total, base, cv, lag1, zero_run, log_level, log_spread, filled)
    for name in ("total", "base", "cv", "lag1", "zero_run", "log_level", "log_spread"):
        getattr(out, name)[missing] = np.nan
    return out
