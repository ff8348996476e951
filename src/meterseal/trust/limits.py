"""What an anonymous source may make the CAS keep (sans-IO): outstanding nonces, logged refusals.

Anyone who can reach the CAS may ask for a nonce and send a release, so neither may grow the
store or the CAS log with the sender's effort, and one source must not use up what the others
need. `NonceBudget` counts each process's outstanding nonces (issued, still fresh, not yet
used by a quote) per source and in all, and refuses a new one beyond either cap; a nonce
stops counting when a quote uses it or when it expires. Unused nonces can therefore hold at
most the caps' worth of rows, and the store forgets them one window after they expire.

`RefusalBudget` decides which refusals that moved no nonce (a malformed request, a quote that
does not verify, an unknown or already used nonce) the CAS log records: token buckets per
source and in all (`accounts.throttle`). Beyond them a refusal is still refused and counted,
only not appended to the log. A refusal that moved a nonce (expired, policy) needs a quote
that verifies for a nonce this CAS issued, so the nonce caps bound it, and it is always logged.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from meterseal.accounts.throttle import Throttle, ThrottleLimits
from meterseal.trust.errors import ReleaseRefused

SOURCE_FULL = "nonces_refused_source"  # counter of nonces refused: the source holds its cap
CAS_FULL = "nonces_refused_total"  # counter of nonces refused: all sources hold the total cap


@dataclass(frozen=True)
class CasLimits:
    """The CAS's caps on unauthenticated work, per process."""

    max_nonces_per_source: int = 64  # outstanding nonces one source may hold (one NAT's workers)
    max_nonces: int = 4096  # outstanding nonces all sources together may hold
    logged_refusals_per_source: int = 20  # anonymous refusals of one source the log takes at once
    logged_refusal_rate_per_source: float = 1 / 60  # per second it earns back (one a minute)
    logged_refusals: int = 200  # anonymous refusals of all sources the log takes at once
    logged_refusal_rate: float = 0.1  # per second they earn back (one every 10 s)
    tracked_sources: int = 10_000  # sources whose refusal buckets are remembered (LRU)


@dataclass(frozen=True)
class Full:
    """A nonce refused: which cap (its counter), how many, and when one is free (seconds)."""

    counter: str
    cap: int
    retry_after: float


class TooManyNonces(ReleaseRefused):
    """No nonce now: the source, or all sources, hold their cap of outstanding ones (429)."""

    def __init__(self, full: Full) -> None:
        whose = "this source holds" if full.counter == SOURCE_FULL else "all sources hold"
        super().__init__(
            f"too many nonces outstanding: {whose} {full.cap} unused ones; retry when one "
            "is used or has expired",
            status=429,
        )
        self.counter = full.counter
        self.retry_after = max(1, math.ceil(full.retry_after))  # seconds, for Retry-After


class NonceBudget:
    """Outstanding nonces per source and in all; thread-safe (the API's threads share it)."""

    def __init__(self, per_source: int, total: int) -> None:
        self.per_source = per_source
        self.total = total
        self._all: dict[bytes, tuple[str, float]] = {}  # nonce: (source, expires_at), by issue
        self._by_source: dict[str, dict[bytes, float]] = {}
        self._lock = threading.Lock()

    def take(self, source: str, nonce: bytes, expires_at: float, now: float) -> Full | None:
        """Count `nonce` as `source`'s; None, or the cap it would exceed (nothing counted)."""
        with self._lock:
            self._sweep(now)
            held = self._by_source.get(source, {})
            if len(held) >= self.per_source:
                return Full(SOURCE_FULL, self.per_source, next(iter(held.values())) - now)
            if len(self._all) >= self.total:
                oldest = next(iter(self._all.values()))[1]
                return Full(CAS_FULL, self.total, oldest - now)
            self._all[nonce] = (source, expires_at)
            self._by_source.setdefault(source, {})[nonce] = expires_at
            return None

    def done(self, nonce: bytes) -> None:
        """`nonce` is outstanding no more (a quote used it, or it was never stored)."""
        with self._lock:
            self._forget(nonce)

    def held(self, source: str) -> int:
        """Outstanding nonces of `source` (as of the last sweep)."""
        with self._lock:
            return len(self._by_source.get(source, ()))

    def _sweep(self, now: float) -> None:
        # Nonces are kept in the order issued, so the expired ones are at the front; a clock
        # that stepped back may leave some a while longer, still within the caps.
        while self._all:
            nonce, (_, expires_at) = next(iter(self._all.items()))
            if expires_at >= now:
                break
            self._forget(nonce)

    def _forget(self, nonce: bytes) -> None:
        entry = self._all.pop(nonce, None)
        if entry is None:
            return
        held = self._by_source[entry[0]]
        del held[nonce]
        if not held:
            del self._by_source[entry[0]]


class RefusalBudget:
    """Which anonymous refusals the CAS log records: per source, then in all (token buckets)."""

    ALL = "*"  # the bucket of all sources (no source key is "*")

    def __init__(self, limits: CasLimits) -> None:
        self._sources = Throttle(
            ThrottleLimits(
                request_burst=limits.logged_refusals_per_source,
                request_rate=limits.logged_refusal_rate_per_source,
                tracked=limits.tracked_sources,
            )
        )
        self._total = Throttle(
            ThrottleLimits(
                request_burst=limits.logged_refusals, request_rate=limits.logged_refusal_rate
            )
        )

    def admit(self, source: str, now: float) -> bool:
        """Log this refusal of `source`? (Its own bucket first: a flooder's refusals beyond
        its share do not drain the bucket every source shares.)"""
        return self._sources.spend(source, now) and self._total.spend(self.ALL, now)
