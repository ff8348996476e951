"""TCP relay: a data concentrator between many meter connections and a few head-end ones.

Why: a process may hold at most 20,000 open files here (a hard RLIMIT_NOFILE we cannot
raise), so no single process can hold 65,000 meter sockets. Real AMI networks put data
concentrators between meters and the head-end for the same reason. A relay is **untrusted**:
it holds no key, sees ciphertext only and speaks the TCP receiver's frame protocol on both
sides (length-prefixed frames in, one status byte per frame back, in order).

* Several relay processes listen on one port with SO_REUSEPORT; the kernel spreads meter
  connections over them (`meterseal.acquisition.relay_pool` spawns and steers them).
* Each meter connection is pinned to one of a few long-lived upstream connections, so its
  acks come back in its own frame order. Per upstream connection an `AckRoute` (sans-IO)
  remembers, in order, which meter each outstanding frame came from and routes every ack
  byte back to it. A meter gone meanwhile just loses its acks.
* Back-pressure: an upstream connection carries at most `max_inflight` unanswered frames
  (the head-end reads no further either); a meter waiting for a slot, with `max_inflight`
  frames of its own unanswered, or not reading its acks is not read (and after
  `frame_timeout` of the last, cut off). Framing caps and timeouts are the TCP receiver's.
* An upstream connection that breaks with frames outstanding cuts the meters that sent them
  (they resend, as on any broken connection); an idle one is reopened on the next frame.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meterseal.acquisition.tcp import READ_SIZE, TcpLimits, encode_frames, read_frames
from meterseal.runtime.connections import GatedListener

T = TypeVar("T")
# Counters that are normal events; any other counter is a fault (framing, timeouts, losses).
RELAY_EVENTS = frozenset({"meters", "frames", "acks", "upstream_connects", "upstream_closed"})
ACK_BUFFER = 4096  # bytes of acks queued for a meter before it must read them


class AckRoute(Generic[T]):
    """Sans-IO: which sender each outstanding frame on one upstream connection came from."""

    def __init__(self) -> None:
        self._senders: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._senders)

    def sent(self, sender: T) -> None:
        """A frame of `sender` went upstream; its ack comes after those already outstanding."""
        self._senders.append(sender)

    def answered(self, replies: bytes) -> list[tuple[T, bytes]]:
        """Pair reply bytes with their senders in order, runs to one sender grouped."""
        if len(replies) > len(self._senders):
            raise ValueError("more replies than frames outstanding")
        routed: list[tuple[T, bytes]] = []
        start = 0
        for i in range(len(replies)):
            sender = self._senders.popleft()
            if i + 1 == len(replies) or self._senders[0] is not sender:
                routed.append((sender, replies[start : i + 1]))
                start = i + 1
        return routed

    def abandon(self) -> list[T]:
        """Forget everything outstanding (the connection died); the senders, in order."""
        senders = list(self._senders)
        self._senders.clear()
        return senders


@dataclass(frozen=True)
class RelayConfig:
    """Where relays listen and forward, how many upstream connections each keeps, their caps."""

    listen: tuple[str, int]
    upstream: tuple[str, int]
    upstreams: int = 4  # connections to the head-end per relay process
    limits: TcpLimits = field(default_factory=TcpLimits)
    connect_timeout: float = 10.0
    backlog: int = 4096


@dataclass(frozen=True)
class RelayStatus:
    """One relay process's counters, meters connected now and at most, and memory."""

    pid: int
    open: int
    peak: int
    counts: dict[str, int]
    rss_kib: int
    peak_rss_kib: int

    @property
    def faults(self) -> dict[str, int]:
        """The counters that are not normal events."""
        return {k: v for k, v in self.counts.items() if k not in RELAY_EVENTS and v}


class _Meter:
    """One meter connection: at most `window` frames unanswered, acks written back in order."""

    def __init__(self, writer: asyncio.StreamWriter, window: int) -> None:
        self.writer = writer
        self.window = asyncio.Semaphore(window)
        self.outstanding = 0
        self.settled = asyncio.Event()
        self.settled.set()
        self.gone = False

    async def sending(self) -> None:
        """Wait for a window slot for one more frame."""
        await self.window.acquire()
        self.outstanding += 1
        self.settled.clear()

    def settle(self, count: int) -> None:
        """`count` of the oldest frames are answered or lost: free their slots."""
        for _ in range(count):
            self.window.release()
        self.outstanding -= count
        if not self.outstanding:
            self.settled.set()

    def deliver(self, acks: bytes) -> bool:
        """Write acks of the oldest frames; False if the meter is gone (they are dropped)."""
        self.settle(len(acks))
        if self.gone or self.writer.transport.is_closing():
            return False
        self.writer.write(acks)
        return True


class UpstreamDown(ConnectionError):
    """The head-end could not be reached; the meter is closed and resends later."""


@dataclass
class _Link:
    writer: asyncio.StreamWriter
    route: AckRoute[_Meter] = field(default_factory=AckRoute)


class _Upstream:
    """One upstream connection slot: reopened on demand, at most `max_inflight` frames out."""

    def __init__(self, config: RelayConfig, counts: Counter[str]) -> None:
        self.config, self.counts = config, counts
        self.slots = asyncio.Semaphore(config.limits.max_inflight)
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._readers: set[asyncio.Task[None]] = set()

    async def forward(self, meter: _Meter, frame: bytes) -> None:
        """Send one frame upstream once a slot is free; its ack goes back to `meter`."""
        await self.slots.acquire()
        try:
            link = await self._connected()
        except (OSError, TimeoutError) as exc:
            self.slots.release()
            raise UpstreamDown(str(exc)) from exc
        except BaseException:
            self.slots.release()
            raise
        link.route.sent(meter)
        # No drain: the slots bound what can queue on this connection.
        link.writer.write(encode_frames((frame,)))

    async def _connected(self) -> _Link:
        async with self._lock:
            if self._link is None:
                host, port = self.config.upstream
                opening = asyncio.open_connection(host, port)
                reader, writer = await asyncio.wait_for(opening, self.config.connect_timeout)
                self.counts["upstream_connects"] += 1
                self._link = _Link(writer)
                task = asyncio.create_task(self._answers(self._link, reader))
                self._readers.add(task)
                task.add_done_callback(self._readers.discard)
            return self._link

    async def _answers(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(READ_SIZE):
                for meter, acks in link.route.answered(chunk):
                    self._free(len(acks))
                    self.counts["acks"] += len(acks)
                    if not meter.deliver(acks):
                        self.counts["ack_dropped"] += len(acks)
        except ConnectionError:
            pass
        except ValueError:
            self.counts["upstream_protocol"] += 1  # acks nobody asked for: stop trusting it
        finally:
            if self._link is link:
                self._link = None
            link.writer.close()
            lost = link.route.abandon()
            self.counts["upstream_lost" if lost else "upstream_closed"] += 1
            if lost:
                self.counts["frames_lost"] += len(lost)
            self._free(len(lost))
            for meter in lost:
                meter.settle(1)
                meter.writer.transport.abort()  # it resends what went unanswered

    def _free(self, count: int) -> None:
        for _ in range(count):
            self.slots.release()

    async def close(self) -> None:
        """Close the connection and wait for its reader to settle the meters."""
        if self._link is not None:
            self._link.writer.close()
        await asyncio.gather(*self._readers, return_exceptions=True)


class Relay:
    """Meter connections in, frames forwarded over a few upstream connections, acks routed back."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.counts: Counter[str] = Counter()
        self.open = self.peak = 0
        self._upstreams = [_Upstream(config, self.counts) for _ in range(config.upstreams)]
        self._next = 0
        self._listener = GatedListener("relay", self._meter, config.limits, self.counts)
        self._meters: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen (sharing the port with sibling relays); returns the port."""
        host, port = self.config.listen
        return await self._listener.start(host, port, backlog=self.config.backlog, reuse_port=True)

    async def stop(self) -> None:
        """Stop accepting, drop meter connections, close upstream connections."""
        await self._listener.close()
        for task in list(self._meters):
            task.cancel()
        await asyncio.gather(*self._meters, return_exceptions=True)
        for upstream in self._upstreams:
            await upstream.close()

    def status(self) -> RelayStatus:
        """Counters and gauges now."""
        # Not ru_maxrss: Linux carries the peak of the process image before exec into it.
        with open("/proc/self/status") as status:
            memory = dict(line.split(":", 1) for line in status if line.startswith("Vm"))
        rss, peak = (int(memory[key].split()[0]) for key in ("VmRSS", "VmHWM"))
        return RelayStatus(os.getpid(), self.open, self.peak, dict(self.counts), rss, peak)

    async def _meter(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._meters.add(task)
            task.add_done_callback(self._meters.discard)
        meter = _Meter(writer, self.config.limits.max_inflight)
        writer.transport.set_write_buffer_limits(high=ACK_BUFFER)
        self.counts["meters"] += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self._relay(reader, meter)
        except asyncio.CancelledError:
            pass  # stopping
        except UpstreamDown:
            self.counts["upstream_unreachable"] += 1
        except ConnectionError:
            self.counts["peer_gone"] += 1
        except TimeoutError:
            self.counts["slow_reader"] += 1  # its acks piled up unread
        finally:
            meter.gone = True
            self.open -= 1
            writer.transport.abort()  # nothing left to flush, or nothing worth flushing

    async def _relay(self, reader: asyncio.StreamReader, meter: _Meter) -> None:
        # Pinned to one upstream connection, so the meter's acks keep its frame order.
        upstream = self._upstreams[self._next % len(self._upstreams)]
        self._next += 1
        limits, writer = self.config.limits, meter.writer
        async for frames in read_frames(reader, limits, self.counts):
            self.counts["frames"] += len(frames)
            for frame in frames:
                await meter.sending()
                await upstream.forward(meter, frame)
            if writer.transport.get_write_buffer_size() > ACK_BUFFER:
                await asyncio.wait_for(writer.drain(), limits.frame_timeout)
        # Done sending (or it broke the framing): answer what it sent, then close.
        try:
            await asyncio.wait_for(meter.settled.wait(), limits.idle_timeout)
        except TimeoutError:
            self.counts["unanswered"] += 1
            return
        await asyncio.wait_for(writer.drain(), limits.frame_timeout)
