"""HTTP pieces of the gateway: byte ranges and the KVS metrics.

`byte_range` reads one `Range: bytes=…` header (RFC 9110 section 14): `a-b`, `a-` and the
suffix `-n`; a header that is not a single byte range is ignored (the whole object is sent,
as the RFC allows), and one that starts beyond the object is `Unsatisfiable` (416).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_FAR = 10**18  # a position past any object: longer numbers are read as this one
KVS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _position(digits: str) -> int:
    """A byte position written in decimal; one of more than 18 digits (int() refuses over
    4,300: a 500 for a header anyone with read rights could send) is beyond any object."""
    digits = digits.lstrip("0") or "0"
    return _FAR if len(digits) > 18 else int(digits)


class Unsatisfiable(Exception):
    """A range that starts at or beyond the object's end (answered with 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) asked for by `header` of an object of `size` bytes; None: all of it."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole object (RFC 9110 14.2)
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        suffix = _position(last)
        if suffix == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size
    start = _position(first)
    if start >= size:
        raise Unsatisfiable
    end = size if not last else min(size, _position(last) + 1)
    if end <= start:
        return None  # last < first: not a valid range, ignored
    return start, end


class KvsMetrics:
    """Prometheus metrics of the gateway: requests by operation and outcome, bytes, latency."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.requests = Counter(
            "meterseal_kvs_requests",
            "KVS requests by operation and outcome (ok, refused, missing, failed, aborted)",
            ["op", "outcome"],
            registry=registry,
        )
        self.bytes = Counter(
            "meterseal_kvs_bytes",
            "Plaintext object bytes received (in) and sent (out) by the gateway",
            ["direction"],
            registry=registry,
        )
        self.seconds = Histogram(
            "meterseal_kvs_request_seconds",
            "Time the gateway spends on a request, by operation (a GET until its last byte)",
            ["op"],
            registry=registry,
            buckets=KVS_BUCKETS,
        )

    def register(self, registry: CollectorRegistry) -> None:
        """Expose the metrics in `registry` too (the service's, scraped at /metrics)."""
        for metric in (self.requests, self.bytes, self.seconds):
            registry.register(metric)

    @contextmanager
    def timed(self, op: str) -> Iterator[None]:
        """Time the block as operation `op`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds.labels(op).observe(time.perf_counter() - started)

    def count(self, op: str, outcome: str) -> None:
        """One request of `op` ended with `outcome`."""
        self.requests.labels(op, outcome).inc()
