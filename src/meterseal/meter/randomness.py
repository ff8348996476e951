"""Counter-based randomness for the load model: every number is a hash of its coordinates.

SplitMix64 over (seed, meter, stream, interval) gives reproducible values for any window in
any order, with no generator state to carry between calls.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def mix(x: U64) -> U64:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@functools.lru_cache(maxsize=64)
def counters(stream: int, first: int, count: int) -> U64:
    """Hashed counters first .. first+count-1 of a stream (shared by every meter, cached)."""
    hashed = mix(np.arange(first, first + count, dtype=np.uint64) ^ np.uint64(stream << 44))
    hashed.setflags(write=False)
    return hashed


def bits(keys: U64, stream: int, first: int, count: int) -> U64:
    """64 random bits per (key, counter): keys (M,) -> (M, count)."""
    return mix(keys[:, None] ^ counters(stream, first, count)[None, :])


def uniform(bits: U64) -> F64:
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def normal_table() -> F64:
    # Box-Muller over a stratified 256 x 256 grid, sorted: 65,536 normal quantiles (|z| < 3.6).
    g = (np.arange(256) + 0.5) / 256
    z = np.sort((np.sqrt(-2.0 * np.log(g))[:, None] * np.cos(2.0 * np.pi * g)[None, :]).ravel())
    table: F64 = (z - z.mean()) / z.std()
    table.setflags(write=False)
    return table


NORMAL = normal_table()


def normal(bits: U64, scale: float = 1.0) -> F64:
    """Standard normal (times `scale`) from the top 16 bits: one table look-up."""
    z: F64 = NORMAL[bits >> np.uint64(48)]
    if scale != 1.0:
        z *= scale
    return z


def poisson(lam: F64, u: F64) -> I64:
    """Poisson counts by inverting the CDF at uniforms `u` (lam broadcasts against u)."""
    top = float(lam.max(initial=0.0))
    term = np.exp(-lam) * np.ones_like(u)
    cdf = term.copy()
    n = np.zeros(u.shape, np.int64)
    for k in range(1, int(top + 6 * math.sqrt(top) + 6)):
        more = u > cdf
        if not more.any():
            break
        n += more
        term = term * lam / k
        cdf += term
    return n
