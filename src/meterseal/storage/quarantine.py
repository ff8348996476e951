"""How much of the refused packets the quarantine keeps: per source, in all, and for how long.

The quarantine keeps refused packets as evidence, but whoever can reach a receiver can send
garbage, so it must not grow with the sender's effort. `QuarantineBudget` (sans-IO) admits a
refused packet only while its source and the quarantine as a whole have tokens left (token
buckets: a burst, refilled at a steady rate, on the packets' arrival clock); a packet beyond
either is still refused and counted under its reason, only its bytes are not kept
(`dropped`). `prune_statements` delete what retention no longer allows: rows older than
`max_age` and the oldest rows beyond `max_rows`. Accepted readings never pass through here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from meterseal.acquisition.records import Rejection
from meterseal.runtime.connections import source_key
from meterseal.storage.schema import quarantine

_TRACKED = 10_000  # sources remembered at once; beyond, buckets that are full again are forgotten


@dataclass(frozen=True)
class QuarantineLimits:
    """Caps of the quarantine: per source and overall token buckets, and retention."""

    per_source_burst: int = 1000  # rows one source may add at once
    per_source_rate: float = 1.0  # rows per second a source earns back
    total_burst: int = 10_000  # rows all sources together may add at once
    total_rate: float = 100.0  # rows per second all sources together earn back
    max_rows: int = 100_000  # the oldest rows beyond this are deleted when pruning
    max_age: float = 30 * 86_400.0  # rows received longer ago (seconds) are deleted
    prune_every: float = 60.0  # seconds between prunes by a running head-end


def quarantine_source(source: str) -> str:
    """The source a cap counts against: a receiver's peer address without its port."""
    kind, colon, peer = source.partition(":")
    if kind not in ("tcp", "http") or not colon:
        return source  # an MQTT topic, a meter (replays), a bus stage: already one sender
    host = peer.rpartition(":")[0] or peer
    return f"{kind}:{source_key(host.strip('[]'))}"


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens, self.last = tokens, last

    def take(self, now: float, rate: float, burst: int) -> bool:
        self.tokens = min(burst, self.tokens + max(0.0, now - self.last) * rate)
        self.last = max(self.last, now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class QuarantineBudget:
    """Sans-IO: which refused packets the quarantine keeps (the others are dropped)."""

    def __init__(self, limits: QuarantineLimits) -> None:
        self.limits = limits
        self._total = _Bucket(limits.total_burst, 0.0)
        self._sources: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # the store may be called from several threads

    def admit(self, refused: Sequence[Rejection]) -> list[Rejection]:
        """The refused packets to keep, in order."""
        with self._lock:
            return [r for r in refused if self._admit(r)]

    def _admit(self, rejection: Rejection) -> bool:
        limits, now = self.limits, rejection.received_at
        source = quarantine_source(rejection.source)
        bucket = self._sources.get(source)
        if bucket is None:
            if len(self._sources) >= _TRACKED:
                self._forget_full(now)
            bucket = self._sources[source] = _Bucket(limits.per_source_burst, now)
        if not bucket.take(now, limits.per_source_rate, limits.per_source_burst):
            return False
        if not self._total.take(now, limits.total_rate, limits.total_burst):
            bucket.tokens += 1.0  # not kept after all: the source keeps its token
            return False
        return True

    def _forget_full(self, now: float) -> None:
        limits = self.limits
        refill = limits.per_source_burst / limits.per_source_rate if limits.per_source_rate else 0
        self._sources = {s: b for s, b in self._sources.items() if refill and now - b.last < refill}
        if len(self._sources) >= _TRACKED:  # a flood from ever new sources: the total caps it
            self._sources.clear()


def prune_statements(limits: QuarantineLimits, now: float) -> list[sa.Delete]:
    """Deletes of rows past retention: older than max_age, and the oldest beyond max_rows."""
    q = quarantine
    first_beyond = sa.select(q.c.id).order_by(q.c.id.desc()).offset(limits.max_rows).limit(1)
    return [
        q.delete().where(q.c.received_at < now - limits.max_age),
        q.delete().where(q.c.id <= first_beyond.scalar_subquery()),
    ]
