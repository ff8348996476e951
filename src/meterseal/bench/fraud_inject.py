"""Thieves injected into real consumption for `bench fraud`: numpy only, no detector code.

Each function alters one customer's readings on its own local days, (days, slots) with NaN
where it has no data, from an onset day on (the customer's first day is 0). The patterns
are the six of Jokar, Arianpoo and Leung ("Electricity theft detection in AMI using
customers' consumption patterns", IEEE Trans. Smart Grid 7(1), 2016), with their
parameters drawn per thief, plus two harder ones:

1. scaled: every reading times a in [0.2, 0.8];
2. zeroed window: readings set to 0 in a daily window of 4 to 12 hours;
3. random scaling: each reading times its own a_t in [0.1, 0.8];
4. mean times random: the day's mean times a_t in [0.1, 0.8];
5. constant: every reading the day's mean;
6. reversed: the day's readings in reverse order;
7. partial-day bypass: a daily window of 3 to 8 hours (a heavy appliance wired around the
   meter) times b in [0, 0.3];
8. gradual drift: the register loses a growing share, from 0 at onset to 30-60 % at the end.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Rng = np.random.Generator


def _window(slots: int, rng: Rng, hours: tuple[float, float]) -> npt.NDArray[np.bool_]:
    """A daily window of the given length range (hours), starting at a random slot."""
    per_hour = slots / 24
    length = round(rng.uniform(*hours) * per_hour)
    start = int(rng.integers(0, slots))
    mask = np.zeros(slots, bool)
    mask[(start + np.arange(length)) % slots] = True
    return mask


def _day_mean(x: F64) -> F64:
    with warnings.catch_warnings():  # a missing day's mean is NaN, as the day
        warnings.simplefilter("ignore", RuntimeWarning)
        out: F64 = np.nanmean(x, axis=1, keepdims=True) * np.ones_like(x)
    return out


def scaled(x: F64, rng: Rng) -> F64:
    """Jokar 1."""
    return x * rng.uniform(0.2, 0.8)


def zeroed_window(x: F64, rng: Rng) -> F64:
    """Jokar 2."""
    return np.where(_window(x.shape[1], rng, (4.0, 12.0))[None, :], 0.0, x)


def random_scaling(x: F64, rng: Rng) -> F64:
    """Jokar 3."""
    return x * rng.uniform(0.1, 0.8, x.shape)


def mean_random(x: F64, rng: Rng) -> F64:
    """Jokar 4."""
    return _day_mean(x) * rng.uniform(0.1, 0.8, x.shape)


def constant(x: F64, rng: Rng) -> F64:
    """Jokar 5."""
    return _day_mean(x)


def reversed_day(x: F64, rng: Rng) -> F64:
    """Jokar 6."""
    return x[:, ::-1].copy()


def partial_bypass(x: F64, rng: Rng) -> F64:
    """A daily window bypassed: what runs then is barely counted."""
    mask = _window(x.shape[1], rng, (3.0, 8.0))
    return np.where(mask[None, :], x * rng.uniform(0.0, 0.3), x)


def gradual_drift(x: F64, rng: Rng) -> F64:
    """The register drifts: the share it loses grows linearly over the days after onset."""
    final = rng.uniform(0.3, 0.6)
    share = np.linspace(0.0, final, len(x) + 1)[1:]
    return x * (1.0 - share)[:, None]


PATTERNS: dict[str, Callable[[F64, Rng], F64]] = {
    "scaled": scaled,
    "zeroed window": zeroed_window,
    "random scaling": random_scaling,
    "mean times random": mean_random,
    "constant": constant,
    "reversed": reversed_day,
    "partial-day bypass": partial_bypass,
    "gradual drift": gradual_drift,
}


def inject(days: F64, pattern: str, rng: Rng, onset: tuple[float, float] = (0.3, 0.7)) -> F64:
    """One customer's days with theft `pattern` from a random onset (a share of its own
    span of present days drawn in `onset`); days before it are untouched."""
    present = np.flatnonzero(~np.isnan(days).all(axis=1))
    out = days.copy()
    if len(present) < 4:
        return out
    first, last = int(present[0]), int(present[-1]) + 1
    start = first + int(rng.uniform(*onset) * (last - first))
    altered = PATTERNS[pattern](days[start:last], rng)
    out[start:last] = np.where(np.isnan(days[start:last]), np.nan, np.maximum(altered, 0.0))
    return out
