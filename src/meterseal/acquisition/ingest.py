"""Batching between receivers and the trusted stages: acknowledge only what is durable.

Receivers `await ingest.submit(packet)` and get an Ack once the batch holding the packet
has been through the stages and committed by the store. Two threads form a pipeline: the
stage thread opens and checks batch N+1 while the store thread commits batch N. All stage
state (freshness, counters) is touched by the stage thread only, and batches are committed
in order; the event loop keeps receiving meanwhile. Running the freshness check of N+1
before N is committed is safe: it only sees an older highest counter, and the store itself
refuses a second packet with a counter it already holds.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from meterseal.acquisition.records import AcceptedReading, Rejection, StoreOutcome
from meterseal.acquisition.stages import Incoming, StageResult, TrustedStages

log = logging.getLogger(__name__)


class Ack(enum.Enum):
    """What a receiver tells the sender; deliberately without a reason."""

    ACCEPTED = 0  # durable (stored now or before): do not resend
    REJECTED = 1  # refused for good: do not resend
    RETRY = 2  # not durable (overload, store unavailable): resend later


class ReadingSink(Protocol):
    """Where accepted readings and rejections go (the store)."""

    def save_batch(
        self, accepted: Sequence[AcceptedReading], rejected: Sequence[Rejection]
    ) -> list[StoreOutcome]:
        """Persist a batch in one transaction; one outcome per accepted reading."""
        ...


class PacketIntake(Protocol):
    """What a receiver hands packets to: `Ingest` here, a bus publisher in services mode."""

    counts: Counter[str]

    def enqueue(self, item: Incoming) -> asyncio.Future[Ack]:
        """Queue a packet; the future resolves once it is durable (or refused, or to retry)."""
        ...

    async def submit(self, item: Incoming) -> Ack:
        """Queue a packet and wait for its ack."""
        ...

    def pending(self) -> int:
        """Packets waiting (a queue-depth metric)."""
        ...


@dataclass
class _Pending:
    item: Incoming
    future: asyncio.Future[Ack]


class Ingest:
    """The batching front of the trusted stages."""

    def __init__(
        self,
        stages: TrustedStages,
        sink: ReadingSink,
        *,
        batch_size: int = 256,
        max_delay: float = 0.005,
        max_pending: int = 20_000,
        clock: Callable[[], float] = time.time,
        latency_window: int = 1_000_000,
    ) -> None:
        self.stages = stages
        self.sink = sink
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.clock = clock
        self.counts: Counter[str] = Counter()
        # Acquisition latency (received -> durable, seconds) of the most recent packets.
        self.latencies: deque[float] = deque(maxlen=latency_window)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_pending)
        self._stage_thread = ThreadPoolExecutor(1, thread_name_prefix="trusted-stages")
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._worker: asyncio.Task[None] | None = None
        self._storing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the batching worker."""
        self._worker = asyncio.create_task(self._run(), name="ingest-worker")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._worker is not None:
            await self._queue.join()
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._stage_thread.shutdown(wait=True)
        self._store_thread.shutdown(wait=True)

    def pending(self) -> int:
        """Packets waiting for a batch (a queue-depth metric)."""
        return self._queue.qsize()

    def enqueue(self, item: Incoming) -> asyncio.Future[Ack]:
        """Queue a packet; the future resolves once it is durable (or refused, or to retry)."""
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(item, future))
        except asyncio.QueueFull:
            self.counts["overload"] += 1
            future.set_result(Ack.RETRY)
        return future

    async def submit(self, item: Incoming) -> Ack:
        """Queue a packet and wait until it is durable (or refused)."""
        return await self.enqueue(item)

    async def _next_batch(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_delay
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())  # the common case under load: no timer
                continue
            except asyncio.QueueEmpty:
                pass
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            items = [p.item for p in batch]
            try:
                result = await loop.run_in_executor(
                    self._stage_thread,
                    functools.partial(self.stages.process, items, now=self.clock()),
                )
            except Exception:
                log.exception("batch of %d not checked; senders are told to retry", len(batch))
                self._answer(batch, [Ack.RETRY] * len(batch), "stages_failed")
                continue
            if self._storing is not None:
                await self._storing  # commit in order; the next batch is checked meanwhile
            self._storing = asyncio.create_task(self._store(batch, result))

    async def _store(self, batch: list[_Pending], result: StageResult) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self._store_thread, self.sink.save_batch, result.accepted, result.rejected
            )
            await loop.run_in_executor(
                self._stage_thread, self.stages.stored, result.accepted, outcomes
            )
        except Exception:
            log.exception("batch of %d not stored; senders are told to retry", len(batch))
            self._answer(batch, [Ack.RETRY] * len(batch), "store_unavailable")
            return
        acks = []
        for index in result.order:
            if index < 0:
                acks.append(Ack.REJECTED)
            else:
                conflict = outcomes[index] is StoreOutcome.CONFLICT
                acks.append(Ack.REJECTED if conflict else Ack.ACCEPTED)
        self._answer(batch, acks)

    def _answer(self, batch: list[_Pending], acks: list[Ack], failure: str = "") -> None:
        if failure:
            self.counts[failure] += len(batch)
        else:
            self.counts.update(a.name.lower() for a in acks)
        durable = time.time()
        self.latencies.extend(
            durable - p.item.received_at
            for p, a in zip(batch, acks, strict=True)
            if a is Ack.ACCEPTED
        )
        for pending, ack in zip(batch, acks, strict=True):
            if not pending.future.done():
                pending.future.set_result(ack)
            self._queue.task_done()
