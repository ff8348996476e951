"""Freshness: a per-meter anti-replay window over counters, and a time window on timestamps.

Like IPsec's anti-replay window (RFC 4303 section 3.4.3): a counter above the highest seen
is fresh; one within `window` below it may be a reordered reading and passes on to the store,
which makes an exact duplicate idempotent and refuses the same counter with other content;
anything older is refused. Timestamps must lie in [now - max_age, now + max_skew].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from meterseal.errors import RejectReason


@dataclass(frozen=True)
class FreshnessPolicy:
    """How far back a counter and a timestamp may be, and how far ahead a clock may run."""

    window: int = 1024
    max_age_seconds: int = 40 * 86_400
    max_skew_seconds: int = 300

    def __post_init__(self) -> None:
        if self.window < 1 or self.max_age_seconds < 0 or self.max_skew_seconds < 0:
            raise ValueError("freshness window and bounds must be positive")


class Timed(Protocol):
    """What freshness looks at: a meter's counter and the reading's time span."""

    @property
    def meter_id(self) -> str: ...
    @property
    def counter(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def interval(self) -> int: ...


class FreshnessState:
    """Highest counter seen per meter; seeded from the store at start-up."""

    def __init__(self, highest: dict[str, int] | None = None) -> None:
        self._highest: dict[str, int] = dict(highest or {})

    def highest(self, meter_id: str) -> int | None:
        """The highest counter accepted from `meter_id`, if any."""
        return self._highest.get(meter_id)

    def check(self, reading: Timed, now: float, policy: FreshnessPolicy) -> RejectReason | None:
        """The reason to refuse `reading`, or None if it may go on (state is not changed)."""
        if reading.timestamp > now + policy.max_skew_seconds:
            return RejectReason.FUTURE_TIMESTAMP
        if reading.timestamp + reading.interval < now - policy.max_age_seconds:
            return RejectReason.STALE_TIMESTAMP
        highest = self._highest.get(reading.meter_id)
        if highest is not None and reading.counter <= highest - policy.window:
            return RejectReason.STALE_COUNTER
        return None

    def advance(self, meter_id: str, counter: int) -> None:
        """Record that `counter` of `meter_id` is durably stored."""
        if counter > self._highest.get(meter_id, -1):
            self._highest[meter_id] = counter

    def __len__(self) -> int:
        return len(self._highest)
