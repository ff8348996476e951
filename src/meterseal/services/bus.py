"""The bus between services: NATS JetStream, and an in-memory twin with the same semantics.

Streams are work queues: each message goes to one worker of a stage (a shared durable pull
consumer is JetStream's queue group), is redelivered if not acknowledged within `ack_wait`,
and is acknowledged by the worker only after its result is durable (published on the next
stream, or committed by the store). Publishing returns once the stream holds the message.
A message id lets the stream drop a republished duplicate within its duplicate window.
Notifications (`notify`/`listen`) are fire-and-forget core NATS messages for waiting callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meterseal.errors import MetersealError

PACKETS = "MS_PACKETS"
VERIFIED = "MS_VERIFIED"
BILLING = "MS_BILLING"
# stream -> the subject it holds
STREAMS: dict[str, str] = {
    PACKETS: "ms.packets",
    VERIFIED: "ms.verified",
    BILLING: "ms.billing.requests",
}
BILL_DONE = "ms.billing.done"  # notification subject prefix: BILL_DONE.<request id>
DEFAULT_ACK_WAIT = 10.0
MAX_MESSAGE_BYTES = 8 * 2**20  # JetStream's own limit is set to match (max_payload permitting)


class BusError(MetersealError):
    """The bus is unreachable or refused an operation."""


class Delivery(Protocol):
    """One message handed to a worker; it stays owned by the worker until acked or nak'ed."""

    @property
    def data(self) -> bytes:
        """The message body."""
        ...

    @property
    def attempt(self) -> int:
        """1 on first delivery, more on redelivery."""
        ...

    @property
    def sequence(self) -> int:
        """The message's position in its stream (stable across redeliveries)."""
        ...

    async def ack(self) -> None:
        """Done: the result is durable; the stream may drop the message."""
        ...

    async def nak(self) -> None:
        """Not done: deliver it again (to any worker)."""
        ...


class Consumer(Protocol):
    """A worker's end of a stream (shared by every worker of the stage)."""

    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]:
        """Up to `batch` messages; fewer (maybe none) once `timeout` seconds passed."""
        ...

    async def pending(self) -> int:
        """Messages not yet delivered (queue depth)."""
        ...


class Bus(Protocol):
    """Durable streams plus notifications."""

    async def publish(self, stream: str, data: bytes, *, msg_id: str) -> None:
        """Append to `stream`; returns once the stream holds it durably."""
        ...

    async def consumer(self, stream: str, durable: str) -> Consumer:
        """Join the shared consumer `durable` of `stream`."""
        ...

    async def notify(self, subject: str, data: bytes) -> None:
        """Fire-and-forget message to whoever listens on `subject` now."""
        ...

    async def listen(self, subject: str) -> asyncio.Queue[bytes]:
        """Messages on `subject` from now on."""
        ...

    def not_ready(self) -> str | None:
        """Why the bus cannot carry messages now (one line); None when it can."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...


# -- in memory ------------------------------------------------------------------------------


@dataclass
class _Message:
    sequence: int
    data: bytes
    attempt: int = 0
    deadline: float = 0.0


@dataclass
class _MemoryDelivery:
    queue: _MemoryStream
    message: _Message

    @property
    def data(self) -> bytes:
        return self.message.data

    @property
    def attempt(self) -> int:
        return self.message.attempt

    @property
    def sequence(self) -> int:
        return self.message.sequence

    async def ack(self) -> None:
        self.queue.unacked.pop(self.message.sequence, None)

    async def nak(self) -> None:
        if self.queue.unacked.pop(self.message.sequence, None) is not None:
            self.queue.ready.appendleft(self.message)
            self.queue.arrived.set()


@dataclass
class _MemoryStream:
    ack_wait: float
    ready: deque[_Message] = field(default_factory=deque)
    unacked: dict[int, _Message] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def expire(self, now: float) -> None:
        late = [m for m in self.unacked.values() if m.deadline <= now]
        for message in late:
            del self.unacked[message.sequence]
            self.ready.appendleft(message)
        if late:
            self.arrived.set()


@dataclass
class _MemoryConsumer:
    stream: _MemoryStream

    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            self.stream.expire(time.monotonic())
            if self.stream.ready:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.stream.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stream.arrived.wait(), min(remaining, 0.05))
        out: list[Delivery] = []
        now = time.monotonic()
        while self.stream.ready and len(out) < batch:
            message = self.stream.ready.popleft()
            message.attempt += 1
            message.deadline = now + self.stream.ack_wait
            self.stream.unacked[message.sequence] = message
            out.append(_MemoryDelivery(self.stream, message))
        return out

    async def pending(self) -> int:
        return len(self.stream.ready)


class MemoryBus:
    """The bus in one process (tests, embedded runs): same work-queue semantics, no disk."""

    def __init__(self, ack_wait: float = DEFAULT_ACK_WAIT) -> None:
        self.streams = {name: _MemoryStream(ack_wait) for name in STREAMS}
        self._sequence = itertools.count(1)
        self._listeners: dict[str, list[asyncio.Queue[bytes]]] = {}

    async def publish(self, stream: str, data: bytes, *, msg_id: str) -> None:
        """Append unless `msg_id` was seen already (the duplicate window is forever here)."""
        queue = self.streams[stream]
        if msg_id in queue.seen:
            return
        queue.seen.add(msg_id)
        queue.ready.append(_Message(next(self._sequence), data))
        queue.arrived.set()

    async def consumer(self, stream: str, durable: str) -> Consumer:
        """Every consumer of a stream shares its queue, whatever `durable` says."""
        return _MemoryConsumer(self.streams[stream])

    async def notify(self, subject: str, data: bytes) -> None:
        """Deliver to the current listeners of `subject`."""
        for queue in self._listeners.get(subject, []):
            queue.put_nowait(data)

    async def listen(self, subject: str) -> asyncio.Queue[bytes]:
        """A queue that receives what is notified on `subject` from now on."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._listeners.setdefault(subject, []).append(queue)
        return queue

    def not_ready(self) -> str | None:
        """In-process: always carries."""
        return None

    async def close(self) -> None:
        """Nothing to release."""
