"""Batching between receivers and the trusted stages: acknowledge only what is durable.

Receivers `await ingest.submit(packet)` and get an Ack once the batch holding the packet
has been through the stages and committed by the store. Two threads form a pipeline: the
stage thread opens and checks the next batches while the store thread commits the earlier
ones, in order, and tells the stages what it stored; the event loop keeps receiving
meanwhile. With `stage_depth` 2, a second batch goes into the stages (to their opening
workers) as soon as it is full, while the first is still being settled, so the workers do
not idle between batches; checked batches still reach the store in arrival order. A packet
is acknowledged as soon as its batch is committed. When the store falls behind, the batches
checked meanwhile are committed together in one transaction (a group commit: one durable
flush for all of them), and the stages run at most `store_depth` batches ahead of the
store. Running the freshness check of a batch before the earlier ones
are committed is safe: it only sees an older highest counter, and the store itself refuses a
second packet with a counter it already holds.
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


class Ack(enum.IntEnum):
    """What a receiver tells the sender, as the byte on the wire; deliberately without a reason."""

    ACCEPTED = 0  # durable (stored now or before): do not resend
    REJECTED = 1  # refused for good: do not resend
    RETRY = 2  # not durable (overload, store unavailable): resend later


_COUNTED = {ack: ack.name.lower() for ack in Ack}  # the counter each ack adds to


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


_Pending = tuple[Incoming, asyncio.Future[Ack]]  # a packet and its ack, until answered


@dataclass
class _Checked:
    """A batch through the stages, waiting for the store."""

    batch: list[_Pending]
    result: StageResult


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
        store_depth: int = 1,
        stage_depth: int = 1,
    ) -> None:
        self.stages = stages
        self.sink = sink
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.clock = clock
        self.counts: Counter[str] = Counter()
        # Acquisition latency (received -> durable, seconds) of the most recent packets.
        self.latencies: deque[float] = deque(maxlen=latency_window)
        self.max_pending = max_pending
        # Packets waiting for a batch; a deque and an event rather than an asyncio.Queue,
        # whose per-item bookkeeping cost more than the rest of receiving a packet.
        self._waiting: deque[_Pending] = deque()
        self._arrival: asyncio.Future[None] | None = None  # the batcher waits for packets
        self._wanted = 1  # how many waiting packets wake the batcher
        self._unanswered = 0  # queued or in a batch, not yet answered
        self._answered_all = asyncio.Event()
        # Checked batches the store has not taken yet, and room for more: the stages take a
        # batch only when there is room for it, so they run at most store_depth batches ahead.
        self._checked: asyncio.Queue[_Checked] = asyncio.Queue()
        # Up to stage_depth batches in the stages at once, each in its own thread: with
        # opening workers, the next batch goes to them while this one is still being
        # settled, so they do not idle between batches.
        self.stage_depth = stage_depth
        self._room = asyncio.Semaphore(store_depth + stage_depth - 1)
        self._stage_thread = ThreadPoolExecutor(stage_depth, thread_name_prefix="trusted-stages")
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the batching and storing workers."""
        self._workers = [
            asyncio.create_task(self._run(), name="ingest-stages"),
            asyncio.create_task(self._store_checked(), name="ingest-store"),
        ]

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._workers:
            while self._unanswered:
                self._answered_all.clear()
                await self._answered_all.wait()
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._stage_thread.shutdown(wait=True)
        self._store_thread.shutdown(wait=True)

    def pending(self) -> int:
        """Packets waiting for a batch (a queue-depth metric)."""
        return len(self._waiting)

    def awaiting_store(self) -> int:
        """Checked batches waiting for the store (a queue-depth metric)."""
        return self._checked.qsize()

    def enqueue(self, item: Incoming) -> asyncio.Future[Ack]:
        """Queue a packet; the future resolves once it is durable (or refused, or to retry)."""
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        if 0 < self.max_pending <= len(self._waiting):
            self.counts["overload"] += 1
            future.set_result(Ack.RETRY)
            return future
        self._waiting.append((item, future))
        self._unanswered += 1
        arrival = self._arrival
        if arrival is not None and not arrival.done() and len(self._waiting) >= self._wanted:
            arrival.set_result(None)
        return future

    async def submit(self, item: Incoming) -> Ack:
        """Queue a packet and wait until it is durable (or refused)."""
        return await self.enqueue(item)

    async def _next_batch(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        await self._arrived()
        deadline = loop.time() + self.max_delay
        batch = self._take(self.batch_size)
        while len(batch) < self.batch_size:  # under load the first take fills it: no timer
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                await asyncio.wait_for(self._arrived(), timeout)
            except TimeoutError:
                break
            batch += self._take(self.batch_size - len(batch))
        return batch

    async def _arrived(self) -> None:
        while not self._waiting:
            self._arrival = asyncio.get_running_loop().create_future()
            try:
                await self._arrival
            finally:
                self._arrival = None

    def _take(self, most: int) -> list[_Pending]:
        take = self._waiting.popleft
        return [take() for _ in range(min(most, len(self._waiting)))]

    async def _run(self) -> None:
        opening: deque[tuple[list[_Pending], asyncio.Future[StageResult]]] = deque()
        while True:
            if not opening:
                await self._room.acquire()
                opening.append(self._start(await self._next_batch()))
            elif len(opening) < self.stage_depth and await self._full_batch_before(opening[0][1]):
                # Room comes back as the store takes checked batches, whatever this task does.
                await self._room.acquire()
                opening.append(self._start(await self._next_batch()))
            else:
                await self._finish(*opening.popleft())

    def _start(self, batch: list[_Pending]) -> tuple[list[_Pending], asyncio.Future[StageResult]]:
        items = [item for item, _ in batch]
        checking = functools.partial(self.stages.process, items, now=self.clock())
        return batch, asyncio.get_running_loop().run_in_executor(self._stage_thread, checking)

    async def _finish(self, batch: list[_Pending], checking: asyncio.Future[StageResult]) -> None:
        try:
            result = await checking
        except Exception:
            log.exception("batch of %d not checked; senders are told to retry", len(batch))
            self._answer(batch, [Ack.RETRY] * len(batch), "stages_failed")
            self._room.release()
            return
        self._checked.put_nowait(_Checked(batch, result))

    async def _full_batch_before(self, checking: asyncio.Future[StageResult]) -> bool:
        """Whether a full batch is waiting before `checking` is done (then it goes in too)."""
        if len(self._waiting) < self.batch_size and not checking.done():
            self._wanted = self.batch_size
            self._arrival = arrival = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait((arrival, checking), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._arrival, self._wanted = None, 1
        return len(self._waiting) >= self.batch_size

    async def _store_checked(self) -> None:
        while True:
            group = [await self._checked.get()]
            while not self._checked.empty():
                group.append(self._checked.get_nowait())
            for _ in group:
                self._room.release()
            await self._store(group)

    async def _store(self, group: list[_Checked]) -> None:
        loop = asyncio.get_running_loop()
        accepted = [r for checked in group for r in checked.result.accepted]
        rejected = [r for checked in group for r in checked.result.rejected]
        try:
            outcomes = await loop.run_in_executor(
                self._store_thread, self._save, accepted, rejected
            )
        except Exception:
            log.exception("%d batches not stored; senders are told to retry", len(group))
            for checked in group:
                self._answer(checked.batch, [Ack.RETRY] * len(checked.batch), "store_unavailable")
            return
        offset = 0
        for checked in group:
            count = len(checked.result.accepted)
            self._answer(checked.batch, _acks(checked.result, outcomes[offset : offset + count]))
            offset += count

    def _save(
        self, accepted: list[AcceptedReading], rejected: list[Rejection]
    ) -> list[StoreOutcome]:
        outcomes = self.sink.save_batch(accepted, rejected)
        self.stages.stored(accepted, outcomes)
        return outcomes

    def _answer(self, batch: list[_Pending], acks: list[Ack], failure: str = "") -> None:
        if failure:
            self.counts[failure] += len(batch)
        else:
            for ack, count in Counter(acks).items():
                self.counts[_COUNTED[ack]] += count
        durable = time.time()
        self.latencies.extend(
            durable - item.received_at
            for (item, _), ack in zip(batch, acks, strict=True)
            if ack is Ack.ACCEPTED
        )
        for (_, future), ack in zip(batch, acks, strict=True):
            if not future.done():
                future.set_result(ack)
        self._unanswered -= len(batch)
        if not self._unanswered:
            self._answered_all.set()


def _acks(result: StageResult, outcomes: list[StoreOutcome]) -> list[Ack]:
    """Each packet's ack, in arrival order: a replayed counter is refused like any rejection."""
    acks = []
    for index in result.order:
        if index < 0 or outcomes[index] is StoreOutcome.CONFLICT:
            acks.append(Ack.REJECTED)
        else:
            acks.append(Ack.ACCEPTED)
    return acks
