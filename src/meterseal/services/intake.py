"""The receiver's side of services mode: packets go to the bus, acked once the stream has them.

`BusIntake` is what the TCP, HTTP and MQTT receivers hand packets to (`PacketIntake`), in
place of the monolith's `Ingest`. It gathers packets for up to `max_delay` seconds or
`batch_size` packets, publishes the batch as one message and acknowledges every packet in it
once JetStream confirms the message is stored (durable; the trusted stages take it from
there, and a redelivery after a crash is idempotent in the store). A failed publish tells the
senders to retry; too many packets waiting tells them to retry too (back-pressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass

from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.stages import Incoming
from meterseal.errors import MetersealError
from meterseal.services.bus import PACKETS, Bus
from meterseal.services.messages import encode_packets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeSettings:
    """How the receiver batches onto the bus."""

    batch_size: int = 256
    max_delay: float = 0.005
    max_pending: int = 50_000
    max_publishing: int = 8  # batches awaiting the stream's confirmation at once


class BusIntake:
    """A `PacketIntake` that publishes batches of sealed packets to the packets stream."""

    def __init__(self, bus: Bus, settings: IntakeSettings | None = None) -> None:
        self.bus = bus
        self.settings = settings or IntakeSettings()
        self.counts: Counter[str] = Counter()
        self._batch: list[tuple[Incoming, asyncio.Future[Ack]]] = []
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(self.settings.max_publishing)
        self._tasks: set[asyncio.Task[None]] = set()

    def pending(self) -> int:
        """Packets not yet confirmed by the stream."""
        return self._waiting

    def enqueue(self, item: Incoming) -> asyncio.Future[Ack]:
        """Queue a packet; the future resolves ACCEPTED once the stream holds it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ack] = loop.create_future()
        if self._waiting >= self.settings.max_pending:
            self.counts["overload"] += 1
            future.set_result(Ack.RETRY)
            return future
        self._waiting += 1
        self._batch.append((item, future))
        if len(self._batch) >= self.settings.batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.settings.max_delay, self._flush)
        return future

    async def submit(self, item: Incoming) -> Ack:
        """Queue a packet and wait for its ack."""
        return await self.enqueue(item)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if batch:
            task = asyncio.create_task(self._publish(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish(self, batch: list[tuple[Incoming, asyncio.Future[Ack]]]) -> None:
        body = encode_packets([item for item, _ in batch])
        ack = Ack.ACCEPTED
        async with self._slots:
            try:
                # Same batch, same id: a retried publish is dropped by the stream's window.
                await self.bus.publish(PACKETS, body, msg_id=hashlib.sha256(body).hexdigest())
            except MetersealError as exc:
                log.warning("batch of %d not published, senders retry: %s", len(batch), exc)
                ack = Ack.RETRY
        self.counts["published" if ack is Ack.ACCEPTED else "bus_unavailable"] += len(batch)
        self._waiting -= len(batch)
        for _, future in batch:
            if not future.done():
                future.set_result(ack)

    async def close(self) -> None:
        """Publish what is gathered and wait for every confirmation."""
        self._flush()
        while self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._tasks))
