"""The trusted stages as bus workers: open/verify, anonymize/store, billing.

Each is a `Stage` for the runtime and the same sans-IO code as the monolith
(`TrustedStages.verify` / `.admit`, `BillingService`). A worker acknowledges a message only
once its result is durable: open/verify after the verified batch is on the next stream,
anonymize/store after the store committed, billing after the bill is recorded. A worker that
dies before that leaves the message to be redelivered to another (or its restarted self);
the store's idempotence (same signed original = duplicate) means nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.freshness import FreshnessPolicy, FreshnessState
from meterseal.acquisition.records import Rejection
from meterseal.acquisition.stages import StageResult, TrustedStages
from meterseal.crypto.registry import MeterRecord
from meterseal.errors import StorageError
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.readiness import Readiness
from meterseal.services.bus import BILL_DONE, BILLING, PACKETS, VERIFIED, Bus, Consumer, Delivery
from meterseal.services.keys import StageSecrets
from meterseal.services.messages import (
    BAD_BUS_MESSAGE,
    BillOrder,
    BillOutcome,
    BusMessageError,
    decode_packets,
    open_verified,
    seal_verified,
)
from meterseal.storage import Store, StoreRegistry

FETCH_TIMEOUT = 0.25
QUEUE_GAUGE_EVERY = 1.0  # seconds between queue-depth queries while busy
log = logging.getLogger(__name__)


def _bad_message(delivery: Delivery, stage: str) -> Rejection:
    return Rejection(BAD_BUS_MESSAGE, delivery.data, time.time(), f"bus:{stage}")


class _NoMeters:
    """The admitting side needs no registry: verification happened upstream."""

    def get(self, meter_id: str) -> MeterRecord | None:
        return None


class BusWorker:
    """Fetch a batch of messages, handle it, acknowledge: the loop every bus worker shares."""

    name = "worker"
    stream = PACKETS
    fetch_batch = 16

    def __init__(self, bus: Bus, metrics: ServiceMetrics | None = None) -> None:
        self.bus = bus
        self.metrics = metrics or ServiceMetrics(self.name)
        self.readiness = Readiness(bus.not_ready)
        self.counts: Counter[str] = Counter()
        self.consumer: Consumer | None = None
        self._gauged = 0.0
        self.metrics.bridge(
            "meterseal_worker_events",
            "Bus messages handled and redelivered, and what became of their packets or bills",
            "kind",
            lambda: self.counts,
        )

    async def start(self) -> dict[str, str]:
        """Join the stage's shared consumer."""
        self.consumer = await self.bus.consumer(self.stream, self.name)
        await self._gauge_queue()
        return {}

    async def _gauge_queue(self) -> None:
        assert self.consumer is not None
        self.metrics.queue_depth.labels(self.stream).set(await self.consumer.pending())
        self._gauged = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: fetch, handle, ack."""
        assert self.consumer is not None, "start() first"
        while not stop.is_set():
            deliveries = await self.consumer.fetch(self.fetch_batch, FETCH_TIMEOUT)
            if not deliveries or time.monotonic() - self._gauged > QUEUE_GAUGE_EVERY:
                await self._gauge_queue()  # a stream query: at most once a second when busy
            if not deliveries:
                continue
            started = time.perf_counter()
            await self.handle(deliveries)
            self.metrics.batch.labels(self.name).observe(time.perf_counter() - started)
            self.counts["messages"] += len(deliveries)
            self.counts["redelivered"] += sum(d.attempt > 1 for d in deliveries)

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Process and acknowledge `deliveries`."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Nothing in flight survives `run`; unacked messages go back to the stream."""

    def counters(self) -> dict[str, Any]:
        """What this worker did."""
        return {"worker": dict(self.counts)}


class OpenVerifyWorker(BusWorker):
    """Opens and verifies sealed packets; publishes the verified batch sealed for the next stage."""

    name = "open-verify"
    stream = PACKETS

    def __init__(
        self,
        bus: Bus,
        store: Store,
        ca_certificate: x509.Certificate,
        secrets: StageSecrets,
        *,
        registry_refresh: float = 5.0,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        super().__init__(bus, metrics)
        self.readiness.add(store.not_ready)
        self.registry = StoreRegistry(store, ca_certificate)
        self.stage_key = secrets.need_stage_key()
        self.stages = TrustedStages(secrets.need_headend(), self.registry, None)
        self.metrics.bridge_stages(lambda: self.stages.counts)
        self.registry_refresh = registry_refresh
        self._refreshed = time.monotonic()

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Verify each message's packets (in a thread), publish, then ack."""
        if time.monotonic() - self._refreshed > self.registry_refresh:
            await asyncio.to_thread(self.registry.refresh)
            self._refreshed = time.monotonic()
        for delivery in deliveries:
            try:
                items = decode_packets(delivery.data)
                result = await asyncio.to_thread(self.stages.verify, items, now=time.time())
            except BusMessageError:
                self.counts[BAD_BUS_MESSAGE] += 1
                result = StageResult([], [_bad_message(delivery, self.name)], [-1])
            body = seal_verified(result, self.stage_key, VERIFIED)
            await self.bus.publish(VERIFIED, body, msg_id=f"verified-{delivery.sequence}")
            await delivery.ack()
            self.counts["packets"] += len(result.order)


class AnonymizeStoreWorker(BusWorker):
    """Freshness, pseudonyms and the durable commit; acks the verified batches it stored."""

    name = "anonymize-store"
    stream = VERIFIED

    def __init__(
        self,
        bus: Bus,
        store: Store,
        secrets: StageSecrets,
        *,
        policy: FreshnessPolicy | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        super().__init__(bus, metrics)
        self.readiness.add(store.not_ready)
        self.store = store
        self.stage_key = secrets.need_stage_key()
        last = store.last_counters()
        self.stages = TrustedStages(
            None,
            _NoMeters(),
            Anonymizer(secrets.need_anonymization_key()),
            policy=policy or FreshnessPolicy(),
            state=FreshnessState({meter: counter for meter, (counter, _) in last.items()}),
        )
        self.metrics.bridge_stages(lambda: self.stages.counts)
        self.metrics.bridge(
            "meterseal_quarantine_discarded",
            "Refused packets not kept in quarantine (dropped) or deleted by retention (pruned)",
            "cause",
            lambda: store.quarantine_counts,
        )
        self._pruned = float("-inf")  # monotonic time of the last quarantine prune

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Admit every batch, commit them in one transaction, then ack them all."""
        now = time.time()
        merged = StageResult()
        for delivery in deliveries:
            try:
                verified = open_verified(delivery.data, self.stage_key, VERIFIED)
            except BusMessageError:
                self.counts[BAD_BUS_MESSAGE] += 1
                merged.rejected.append(_bad_message(delivery, self.name))
                continue
            admitted = self.stages.admit(verified, now=now)
            merged.accepted.extend(admitted.accepted)
            merged.rejected.extend(admitted.rejected)
        try:
            outcomes = await asyncio.to_thread(
                self.store.save_batch, merged.accepted, merged.rejected
            )
        except StorageError as exc:
            # Not durable: hand the batches back for redelivery, pause before trying again.
            log.warning("store unavailable, %d batches go back: %s", len(deliveries), exc)
            self.counts["store_unavailable"] += len(deliveries)
            for delivery in deliveries:
                await delivery.nak()
            await asyncio.sleep(1.0)
            return
        self.stages.stored(merged.accepted, outcomes)
        durable = time.time()
        for reading, outcome in zip(merged.accepted, outcomes, strict=True):
            self.counts[outcome.value] += 1
            if outcome.value == "stored":
                self.metrics.acquisition.observe(durable - reading.received_at)
        self.counts["quarantined"] += len(merged.rejected)
        for delivery in deliveries:
            await delivery.ack()
        await self._prune(now)

    async def _prune(self, now: float) -> None:
        """Apply the quarantine's retention now and then (not per batch: it scans)."""
        if time.monotonic() - self._pruned < self.store.quarantine_limits.prune_every:
            return
        self._pruned = time.monotonic()
        try:
            await asyncio.to_thread(self.store.prune_quarantine, now)
        except StorageError as exc:
            log.warning("quarantine prune failed, trying again later: %s", exc)


class BillingWorker(BusWorker):
    """Bills one customer per order; notifies the requester once the bill is recorded."""

    name = "billing"
    stream = BILLING
    fetch_batch = 4

    def __init__(
        self,
        bus: Bus,
        store: Store,
        secrets: StageSecrets,
        *,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        from meterseal.billing.service import BillingService
        from meterseal.storage.bill_store import BillStore

        super().__init__(bus, metrics)
        self.readiness.add(store.not_ready)
        self.bills = BillStore(store)
        self.service = BillingService(self.bills, secrets.need_billing_key())

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Each order in turn: bill (in a thread), ack, notify."""
        for delivery in deliveries:
            outcome = await asyncio.to_thread(self._bill, delivery.data)
            await delivery.ack()
            self.counts["failed" if outcome.error else "billed"] += 1
            if outcome.request_id:
                await self.bus.notify(f"{BILL_DONE}.{outcome.request_id}", outcome.encode())

    def _bill(self, body: bytes) -> BillOutcome:
        from meterseal.billing.completeness import Period
        from meterseal.billing.service import bill_id_for
        from meterseal.errors import MetersealError

        started = time.perf_counter()
        try:
            order = BillOrder.decode(body)
        except BusMessageError as exc:
            return BillOutcome("", "", 0.0, exc.diagnostics())
        try:
            tariff_id, _, version = order.tariff.partition("@")
            book = self.bills.tariff_book()
            period = Period(order.start, order.end)
            tariff = (
                book.get(tariff_id, int(version))
                if version
                else book.in_force(tariff_id, period.start)
            )
            existing = bill_id_for(order.customer_id, period)
            if self.bills.bill(existing) is not None:
                # Bills are never rewritten: an order redelivered after the bill was recorded
                # (the worker died before its ack), or ordered twice, gets the same bill.
                self.counts["already_billed"] += 1
                return BillOutcome(order.request_id, existing, time.perf_counter() - started)
            meters = self.bills.customer_meters(order.customer_id)
            billed = self.service.bill_customer(order.customer_id, meters, period, tariff)
        except (MetersealError, ValueError) as exc:
            text = exc.diagnostics() if isinstance(exc, MetersealError) else str(exc)
            return BillOutcome(order.request_id, "", time.perf_counter() - started, text)
        return BillOutcome(order.request_id, billed.bill.bill_id, time.perf_counter() - started)
