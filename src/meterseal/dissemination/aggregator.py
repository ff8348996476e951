"""The aggregator: an attested HIGH subscriber that publishes the MODERATE and LOW streams.

MODERATE: per customer and frame (hourly by default), the energy and the readings counted.
LOW: per region and frame, the energy of the meters that reported, released only when at
least `k` distinct meters contributed, optionally with differential-privacy noise within a
budget (`privacy`). Frames close on data time: once a reading starts at or after a frame's
end plus `lateness`, that frame is released; readings for released frames are counted as
late and dropped ("late by more than the window": a reading at least `lateness` seconds past
the frame's end had already arrived). `Aggregation` is the pure arithmetic; `Aggregator`
adds the keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidTag

from meterseal.dissemination.errors import DisseminationError, Reason
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.privacy import DifferentialPrivacy
from meterseal.dissemination.publication import HEADER_FIELDS, NONCE_LENGTH
from meterseal.dissemination.timeframe import Frame

_FIELDS: Final = len(HEADER_FIELDS)
_HIGH: Final = int(PrivacyLevel.HIGH)
_DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


def _refusal(exc: Exception) -> str:
    """The counter for a publication the aggregator could not take."""
    if isinstance(exc, DisseminationError):
        return f"refused_{exc.reason.value}"
    if isinstance(exc, InvalidTag):
        return f"refused_{Reason.DECRYPT_FAILED.value}"
    return "refused_malformed"


@dataclass(frozen=True)
class CustomerLoad:
    """One customer's energy in one frame (MODERATE)."""

    customer: bytes
    region: str
    start: int
    end: int
    wh: int
    readings: int


@dataclass(frozen=True)
class RegionalLoad:
    """One region's energy in one frame (LOW); `epsilon` None when released without noise."""

    region: str
    start: int
    end: int
    wh: int
    meters: int | None
    epsilon: float | None


Release = CustomerLoad | RegionalLoad


@dataclass(frozen=True)
class Closing:
    """The releases of frames that just closed: at most `count`, made as they are taken.

    Closing a frame is instant (late readings are refused from then on); making and sealing
    an hour's 5,000 releases is not, so a service takes them a slice at a time.
    """

    count: int
    releases: Iterator[Release]


@dataclass
class AggregationPolicy:
    """Frames, the minimum group size, lateness allowed, and optional differential privacy."""

    moderate: Frame = field(default_factory=Frame)
    low: Frame = field(default_factory=Frame)
    k: int = 5
    lateness: int = 900
    privacy: DifferentialPrivacy | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.lateness < 0:
            raise ValueError("k must be at least 1 and lateness not negative")


class Aggregation:
    """Sums per customer and per region over frames; pure, fed one reading at a time."""

    def __init__(self, policy: AggregationPolicy) -> None:
        self.policy = policy
        # frame start -> customer -> [wh, readings, region, starts of its readings]
        self._customers: dict[int, dict[bytes, list[Any]]] = {}
        # frame start -> region -> customer -> wh
        self._regions: dict[int, dict[str, dict[bytes, int]]] = {}
        self._released_moderate = -1  # frames starting at or before this are closed
        self._released_low = -1
        self.watermark = 0
        self.counters: Counter[str] = Counter()
        self._seconds = (policy.moderate.seconds, policy.low.seconds)

    def add(self, region: str, customer: bytes, start: int, wh: int) -> None:
        """Count one reading starting at `start` (Unix seconds)."""
        # Fixed-length frames inline (the hot path); calendar months ask the frame.
        m_seconds, l_seconds = self._seconds
        m_start = start - start % m_seconds if m_seconds else self.policy.moderate.start(start)
        l_start = start - start % l_seconds if l_seconds else self.policy.low.start(start)
        if m_start <= self._released_moderate or l_start <= self._released_low:
            self.counters["late"] += 1
            return
        per_customer = self._customers.setdefault(m_start, {})
        entry = per_customer.get(customer)
        if entry is None:
            per_customer[customer] = [wh, 1, region, {start}]
        else:
            starts = entry[3]
            if start in starts and region == entry[2]:
                # The same reading again (a period published twice): counted once.
                self.counters["duplicate"] += 1
                return
            starts.add(start)
            entry[0] += wh
            entry[1] += 1
        per_region = self._regions.setdefault(l_start, {}).setdefault(region, {})
        per_region[customer] = per_region.get(customer, 0) + wh
        if start > self.watermark:
            self.watermark = start

    def due(self) -> list[Release]:
        """Releases of every frame that closed: its end plus lateness is behind the data."""
        closing = self.closing()
        return [] if closing is None else list(closing.releases)

    def closing(self) -> Closing | None:
        """Close the frames that are due (later readings for them count as late) and return
        their releases, made as they are taken; None if no frame closed."""
        return self._close(self.watermark - self.policy.lateness)

    def flush(self) -> list[Release]:
        """Release every open frame (end of the stream)."""
        closing = self._close(None)
        return [] if closing is None else list(closing.releases)

    def _close(self, before: int | None) -> Closing | None:
        frames = self.policy
        customers: list[tuple[int, int, dict[bytes, list[Any]]]] = []
        regions: list[tuple[int, int, dict[str, dict[bytes, int]]]] = []
        for start in sorted(self._customers):
            end = frames.moderate.end(start)
            if before is not None and end > before:
                break
            customers.append((start, end, self._customers.pop(start)))
            self._released_moderate = max(self._released_moderate, start)
        for start in sorted(self._regions):
            end = frames.low.end(start)
            if before is not None and end > before:
                break
            regions.append((start, end, self._regions.pop(start)))
            self._released_low = max(self._released_low, start)
        if not customers and not regions:
            return None
        count = sum(len(c) for _, _, c in customers) + sum(len(r) for _, _, r in regions)
        return Closing(count, self._releases(customers, regions))

    def _releases(
        self,
        customers: list[tuple[int, int, dict[bytes, list[Any]]]],
        regions: list[tuple[int, int, dict[str, dict[bytes, int]]]],
    ) -> Iterator[Release]:
        for start, end, per_customer in customers:
            for customer, (wh, readings, region, _) in sorted(per_customer.items()):
                yield CustomerLoad(customer, region, start, end, wh, readings)
        for start, end, per_region in regions:
            for region, meters in sorted(per_region.items()):
                release = self._regional(region, start, end, meters)
                if release is not None:
                    yield release

    def _regional(
        self, region: str, start: int, end: int, meters: dict[bytes, int]
    ) -> RegionalLoad | None:
        if len(meters) < self.policy.k:
            self.counters["withheld_k"] += 1
            return None
        privacy = self.policy.privacy
        if privacy is None:
            return RegionalLoad(region, start, end, sum(meters.values()), len(meters), None)
        if not privacy.budget.charge(start, privacy.epsilon):
            self.counters["withheld_budget"] += 1
            return None
        clamped = sum(min(max(wh, 0), privacy.clamp_wh) for wh in meters.values())
        # The count is not released under DP: only that it reached k.
        return RegionalLoad(region, start, end, privacy.noise(clamped), None, privacy.epsilon)


class Aggregator:
    """Opens HIGH readings with its attested member's keys; seals MODERATE and LOW releases."""

    def __init__(self, member: MemberClient, publisher: Publisher, policy: AggregationPolicy):
        self.member = member
        self.publisher = publisher
        self.aggregation = Aggregation(policy)
        self.counters: Counter[str] = Counter()

    def consume(self, elements: Sequence[bytes], *, published_at: list[int] | None = None) -> int:
        """Add the readings of a flat batch (header, sealed, …); how many were taken.

        Others are counted, never raised. `published_at`, if given, collects each opened
        publication's header time (µs). The hot path: one cbor2 decode of the header, one
        AES-GCM open (the header is its associated data, so whatever decrypts was sealed by
        a key holder exactly so), one decode of the payload; the fields used are type-checked.
        """
        taken = 0
        add, aead, loads, counters = (
            self.aggregation.add,
            self.member.keys.aead,
            cbor2.loads,
            self.counters,
        )
        for i in range(0, len(elements) - 1, 2):
            header, sealed = elements[i], elements[i + 1]
            try:
                fields = loads(header)
                if type(fields) is not list or len(fields) != _FIELDS:
                    raise TypeError("not a header array")
                level = fields[1]
                ident = (
                    (level, fields[10], fields[7], fields[11])
                    if level == _HIGH
                    else (level, fields[10], b"", 0)
                )
                plaintext = aead(ident).decrypt(
                    sealed[:NONCE_LENGTH], sealed[NONCE_LENGTH:], header
                )
                values = loads(plaintext)
                wh = values.get("wh")
            except (DisseminationError, InvalidTag, AttributeError, *_DECODE_ERRORS) as exc:
                counters[_refusal(exc)] += 1
                continue
            if published_at is not None:
                published_at.append(fields[5])
            region, customer, start = fields[6], fields[7], fields[8]
            if (
                fields[2] != "reading"
                or type(wh) is not int
                or type(region) is not str
                or type(customer) is not bytes
                or type(start) is not int
                or start < 0
            ):
                counters["not_a_reading"] += 1
                continue
            add(region, customer, start, wh)
            taken += 1
        if len(elements) % 2:
            counters["refused_malformed"] += 1
        counters["readings"] += taken  # late ones included: Aggregation counts those
        return taken

    def releases(self, *, at: int, final: bool = False) -> list[list[bytes]]:
        """Sealed publications of every closed frame (every frame when `final`)."""
        done = self.aggregation.flush() if final else self.aggregation.due()
        return [self.seal(release, at=at) for release in done]

    def seal(self, release: CustomerLoad | RegionalLoad, *, at: int) -> list[bytes]:
        """The publication of one release."""
        seal, interval = self.publisher.seal, release.end - release.start
        if isinstance(release, CustomerLoad):
            values = {"wh": release.wh, "readings": release.readings}
            return seal(
                PrivacyLevel.MODERATE, "customer_load", values, at=at, region=release.region,
                customer=release.customer, start=release.start, interval=interval,
            )  # fmt: skip
        low: dict[str, int | float | None] = {"wh": release.wh, "epsilon": release.epsilon}
        if release.meters is not None:
            low["meters"] = release.meters
        return seal(
            PrivacyLevel.LOW, "regional_load", low, at=at, region=release.region,
            start=release.start, interval=interval,
        )  # fmt: skip
