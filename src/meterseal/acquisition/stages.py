"""The trusted stages as one sans-IO object: open → verify → freshness → anonymize.

Receivers hand it raw packets; it returns accepted readings for the store and rejections
for quarantine. It never touches a socket or a database, so the same object runs in one
process, behind a bus, or inside an attested worker. Its state (freshness, counters) is
guarded by a lock held only for bookkeeping, never while opening, so the store's thread can
report outcomes (`stored`) while the next batch is being opened.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.freshness import FreshnessPolicy, FreshnessState
from meterseal.acquisition.records import AcceptedReading, Opened, Rejection, StoreOutcome, Verified
from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.packet import OpenedPacket
from meterseal.crypto.registry import MeterDirectory, MeterRecord
from meterseal.errors import ConfigurationError, InvalidPacket, RejectReason


class Incoming(NamedTuple):
    """A packet as a receiver got it: bytes, arrival time (Unix s) and where from."""

    data: bytes
    received_at: float
    source: str


@dataclass
class StageResult:
    """One batch through the stages: what to store and what to quarantine, in arrival order."""

    accepted: list[AcceptedReading] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # For each incoming packet: index into accepted (>= 0) or rejected (encoded as -1 - index).
    order: list[int] = field(default_factory=list)
    # The packet as it arrived, per accepted reading: quarantine keeps what came in.
    sealed: list[bytes] = field(default_factory=list)


class Opener(Protocol):
    """Something that opens a batch like `packet.open_batch` (e.g. on several cores)."""

    def open_batch(
        self, blobs: list[bytes], now: dt.datetime
    ) -> list[OpenedPacket | InvalidPacket]:
        """One result per packet, in order."""
        ...


@runtime_checkable
class SettlingOpener(Opener, Protocol):
    """An opener that also checks each packet against the live registry (`ParallelOpener`)."""

    def open_settled(self, blobs: list[bytes], now: dt.datetime) -> Sequence[Opened]:
        """One result per packet, in order; good packets as (record, fields)."""
        ...


@dataclass
class TrustedStages:
    """Keys, registry and freshness state of the trusted side, applied to batches."""

    headend: HeadEndKeys | None  # None: this process only admits (services mode)
    registry: MeterDirectory
    anonymizer: Anonymizer | None  # None: this process only verifies (services mode)
    policy: FreshnessPolicy = field(default_factory=FreshnessPolicy)
    state: FreshnessState = field(default_factory=FreshnessState)
    counts: Counter[str] = field(default_factory=Counter)
    opener: Opener | None = None  # None: open in this thread
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def process(self, batch: Iterable[Incoming], *, now: float) -> StageResult:
        """Run every packet of `batch` through the stages at time `now` (Unix seconds)."""
        if self.anonymizer is None:
            raise ConfigurationError("these trusted stages hold no anonymization key")
        items = list(batch)
        opened = self._open([i.data for i in items], now)
        result = StageResult()
        with self._lock:
            self._check(result, items, opened, now)
        return result

    def _open(self, blobs: list[bytes], now: float) -> Sequence[Opened]:
        now_dt = dt.datetime.fromtimestamp(now, dt.UTC)
        if isinstance(self.opener, SettlingOpener):
            return self.opener.open_settled(blobs, now_dt)
        if self.opener is not None:
            return self.opener.open_batch(blobs, now_dt)
        if self.headend is not None:
            return packet.open_batch(blobs, self.headend, self.registry, now=now_dt)
        raise ConfigurationError("these trusted stages hold no head-end key: cannot open")

    def _check(
        self, result: StageResult, items: list[Incoming], opened: Sequence[Opened], now: float
    ) -> None:
        # `verify` then `admit` in one pass, each reading built once, straight from the fields
        # a worker sent back: on the head-end's critical path, a packet's every microsecond
        # here is one the opening workers wait for.
        assert self.anonymizer is not None
        pseudonym, check, policy = self.anonymizer.pseudonym, self.state.check, self.policy
        accepted, order = result.accepted, result.order
        for item, outcome in zip(items, opened, strict=True):
            if isinstance(outcome, InvalidPacket):
                self._reject(result, Rejection(outcome.reason.value, *_origin(item)))
                continue
            if isinstance(outcome, OpenedPacket):
                record = outcome.meter
                reading = _verified(item, outcome, pseudonym(outcome.reading.meter_id))
            else:
                record, fields = outcome
                reading = _settled(item, record, fields, pseudonym(fields[0]))
            if record.integrity_hold is not None:  # quarantined until re-verified
                self._reject(result, Rejection(RejectReason.METER_INTEGRITY.value, *_origin(item)))
                continue
            reason = check(reading, now, policy)
            if reason is not None:
                self._reject(result, Rejection(reason.value, *_origin(item)))
                continue
            order.append(len(accepted))
            accepted.append(reading)

    def verify(self, batch: Iterable[Incoming], *, now: float) -> StageResult:
        """Open and verify: readings (pseudonymous if this process holds the key) and rejections."""
        items = list(batch)
        now_dt = dt.datetime.fromtimestamp(now, dt.UTC)
        blobs = [i.data for i in items]
        if self.opener is not None:
            opened = self.opener.open_batch(blobs, now_dt)
        elif self.headend is not None:
            opened = packet.open_batch(blobs, self.headend, self.registry, now=now_dt)
        else:
            raise ConfigurationError("these trusted stages hold no head-end key: cannot open")
        result = StageResult()
        with self._lock:
            self._classify(result, items, opened)
        return result

    def _classify(
        self, result: StageResult, items: list[Incoming], opened: list[OpenedPacket | InvalidPacket]
    ) -> None:
        anonymizer = self.anonymizer
        for item, outcome in zip(items, opened, strict=True):
            if isinstance(outcome, InvalidPacket):
                self._reject(result, Rejection(outcome.reason.value, *_origin(item)))
            elif outcome.meter.integrity_hold is not None:  # quarantined until re-verified
                self._reject(result, Rejection(RejectReason.METER_INTEGRITY.value, *_origin(item)))
            else:
                result.order.append(len(result.accepted))
                # The pseudonym now if the key is here: `admit` then keeps the reading as it is.
                meter_id = outcome.reading.meter_id
                pseudonym = anonymizer.pseudonym(meter_id) if anonymizer is not None else b""
                result.accepted.append(_verified(item, outcome, pseudonym))
                result.sealed.append(item.data)

    def admit(self, verified: StageResult, *, now: float) -> StageResult:
        """Freshness and anonymization of what `verify` accepted (possibly in another process)."""
        if self.anonymizer is None:
            raise ConfigurationError("these trusted stages hold no anonymization key")
        result = StageResult(rejected=list(verified.rejected))
        with self._lock:
            self._admit(result, verified, now)
        return result

    def _admit(self, result: StageResult, verified: StageResult, now: float) -> None:
        assert self.anonymizer is not None
        for index in verified.order:
            if index < 0:
                result.order.append(index)
                continue
            reading = verified.accepted[index]
            reason = self.state.check(reading, now, self.policy)
            if reason is not None:
                origin = (verified.sealed[index], reading.received_at, reading.source)
                self._reject(result, Rejection(reason.value, *origin))
                continue
            result.order.append(len(result.accepted))
            pseudonym = self.anonymizer.pseudonym(reading.meter_id)
            if reading.pseudonym != pseudonym:
                reading = _with_pseudonym(reading, pseudonym)
            result.accepted.append(reading)

    def _reject(self, result: StageResult, rejection: Rejection) -> None:
        result.order.append(-1 - len(result.rejected))
        result.rejected.append(rejection)
        self.counts[rejection.reason] += 1

    def stored(self, accepted: list[AcceptedReading], outcomes: list[StoreOutcome]) -> None:
        """Learn what the store did: advance freshness for stored readings, count the rest."""
        with self._lock:
            self._learn(accepted, outcomes)

    def _learn(self, accepted: list[AcceptedReading], outcomes: list[StoreOutcome]) -> None:
        for reading, outcome in zip(accepted, outcomes, strict=True):
            if outcome is StoreOutcome.CONFLICT:
                self.counts[RejectReason.REPLAYED_COUNTER.value] += 1
                continue
            self.counts[outcome.value] += 1
            self.state.advance(reading.meter_id, reading.counter)


def _origin(item: Incoming) -> tuple[bytes, float, str]:
    return item.data, item.received_at, item.source


def _with_pseudonym(r: AcceptedReading, pseudonym: bytes) -> AcceptedReading:
    # Positional: dataclasses.replace looks every field up by name and costs twice as much.
    return AcceptedReading(
        r.meter_id,
        r.counter,
        r.timestamp,
        r.interval,
        r.energy_wh,
        r.suite,
        r.signed_original,
        r.sent_at,
        r.received_at,
        r.region_id,
        pseudonym,
        r.phasor,
        r.source,
    )


def _verified(item: Incoming, opened: OpenedPacket, pseudonym: bytes) -> AcceptedReading:
    reading = opened.reading
    # Positional, in AcceptedReading's field order: keywords cost half as much again.
    return AcceptedReading(
        reading.meter_id,
        reading.counter,
        reading.timestamp,
        reading.interval,
        reading.energy_wh,
        opened.suite.name,
        opened.signed_original,
        opened.sent_at,
        item.received_at,
        opened.meter.region_id,
        pseudonym,
        reading.phasor,
        item.source,
    )


def _settled(
    item: Incoming, record: MeterRecord, fields: Verified, pseudonym: bytes
) -> AcceptedReading:
    meter_id, counter, timestamp, interval, energy_wh, phasor, suite, sent_at, signed, _ = fields
    return AcceptedReading(
        meter_id,
        counter,
        timestamp,
        interval,
        energy_wh,
        suite,
        signed,
        sent_at,
        item.received_at,
        record.region_id,
        pseudonym,
        phasor,
        item.source,
    )
