"""TCP receiver: length-prefixed frames in, one status byte per frame out, in order.

Frame: 4-byte big-endian length, then the sealed packet. Reply: one byte per frame
(0 accepted, 1 rejected, 2 retry), in the order the frames arrived. The receiver holds no
key: it moves bytes to `Ingest` and replies once the packet is durable or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from meterseal.acquisition.ingest import Ack, PacketIntake
from meterseal.acquisition.stages import Incoming
from meterseal.crypto.packet import MAX_PACKET_BYTES
from meterseal.runtime.connections import ConnectionLimits, GatedListener, source_key

_LENGTH = struct.Struct(">I")
READ_SIZE = 256 * 1024
# Linux: pick the source port at connect() by the whole 4-tuple, not at bind() (socket(7)).
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TcpLimits(ConnectionLimits):
    """Caps that keep one peer from hurting the others (plus the connection caps)."""

    max_frame: int = MAX_PACKET_BYTES
    max_inflight: int = 128  # per connection: stop reading beyond this (back-pressure)
    frame_timeout: float = 10.0  # a started frame must complete within this
    idle_timeout: float = 120.0  # a silent connection is closed after this
    # Over all of one source's connections: beyond this it is not read until acks go out,
    # so one source cannot fill the ingest queue that every meter shares.
    max_unanswered_per_source: int = 8192


def encode_frames(packets: Iterable[bytes]) -> bytes:
    """Packets as length-prefixed frames, ready to write."""
    return b"".join(_LENGTH.pack(len(data)) + data for data in packets)


@dataclass
class FrameParser:
    """Sans-IO framing: bytes in, whole frames out; a bad length ends the stream for good."""

    max_frame: int
    fault: str | None = None  # "oversized_frame" or "empty_frame" once a bad length is seen
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def partial(self) -> bool:
        """Whether part of a frame is buffered (then the frame timeout runs, not the idle one)."""
        return bool(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add received bytes; the frames they complete, in order (none once faulted)."""
        if self.fault is not None:
            return []
        buffer = self._buffer
        buffer += chunk
        frames: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if length == 0 or length > self.max_frame:
                # The stream cannot be resynchronised after a bad length: drop it.
                self.fault = "oversized_frame" if length else "empty_frame"
                buffer.clear()
                return frames
            if len(buffer) - offset - 4 < length:
                break
            frames.append(bytes(buffer[offset + 4 : offset + 4 + length]))
            offset += 4 + length
        del buffer[:offset]
        return frames


async def read_frames(
    reader: asyncio.StreamReader, limits: TcpLimits, counts: Counter[str]
) -> AsyncIterator[list[bytes]]:
    """A connection's frames, a list per read; ends on EOF, a bad length or a timeout.

    Why it ended is counted in `counts`. The peer is not read while the consumer handles a
    list (back-pressure); a partial frame's timeout restarts after that.
    """
    loop = asyncio.get_running_loop()
    parser = FrameParser(limits.max_frame)
    started = 0.0  # when the first byte of the partial frame arrived
    while True:
        if parser.partial:
            timeout = started + limits.frame_timeout - loop.time()
        else:
            timeout = limits.idle_timeout
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                chunk = await reader.read(READ_SIZE)
        except TimeoutError:
            counts["slow_peer" if parser.partial else "idle_timeout"] += 1
            return
        except ConnectionError:
            counts["connection_lost"] += 1
            return
        if not chunk:
            if parser.partial:
                counts["truncated_frame"] += 1
            return
        fresh = not parser.partial
        frames = parser.feed(chunk)
        if frames:
            yield frames
        if parser.fault is not None:
            counts[parser.fault] += 1
            return
        if frames or fresh:
            started = loop.time()


class AckLine:
    """A connection's ack futures in frame order, at most `limit` unanswered (back-pressure).

    A deque and two waiters rather than an asyncio.Queue, whose per-item bookkeeping cost
    more than the rest of receiving a frame.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.futures: deque[asyncio.Future[Ack]] = deque()
        self.ended = False  # the reader is done: no more futures will come
        self._added: asyncio.Future[None] | None = None  # the replier waits for a frame
        self._answered = asyncio.Event()

    def full(self) -> bool:
        """Whether `limit` frames are unanswered (then the reader waits for `room`)."""
        return len(self.futures) >= self.limit

    async def room(self) -> None:
        """Wait until fewer than `limit` frames are unanswered."""
        while self.full():
            self._answered.clear()
            await self._answered.wait()

    def add(self, future: asyncio.Future[Ack]) -> None:
        """Queue the ack future of the next frame."""
        self.futures.append(future)
        self._wake()

    def extend(self, futures: list[asyncio.Future[Ack]]) -> None:
        """Queue the ack futures of the next frames."""
        self.futures.extend(futures)
        self._wake()

    def end(self) -> None:
        """No more frames: the replier stops once every queued one is answered."""
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._added is not None and not self._added.done():
            self._added.set_result(None)

    async def oldest(self) -> asyncio.Future[Ack] | None:
        """The oldest unanswered future (left in line), or None once ended and all answered."""
        while not self.futures:
            if self.ended:
                return None
            self._added = asyncio.get_running_loop().create_future()
            try:
                await self._added
            finally:
                self._added = None
        return self.futures[0]

    def decided(self) -> bytearray:
        """The ack bytes of the leading futures that are done, taken out of the line."""
        out = bytearray()
        futures = self.futures
        while futures and futures[0].done():
            out.append(futures.popleft().result())
        if out:
            self._answered.set()
        return out


class SourceShares:
    """Unanswered frames per source over all its connections; a source at the cap waits."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}
        self._room: dict[str, asyncio.Event] = {}

    def held(self, source: str) -> int:
        """Frames of `source` not answered yet."""
        return self._held.get(source, 0)

    async def room(self, source: str) -> None:
        """Wait until `source` is below the cap."""
        while self.held(source) >= self.cap:
            room = self._room.setdefault(source, asyncio.Event())
            await room.wait()

    def add(self, source: str, count: int) -> None:
        """`count` more frames of `source` are waiting for their acks."""
        self._held[source] = self.held(source) + count

    def settle(self, source: str, count: int) -> None:
        """`count` frames of `source` were answered (or given up on)."""
        held = self.held(source) - count
        if held:
            self._held[source] = held
        else:
            self._held.pop(source, None)
        if held < self.cap and (room := self._room.pop(source, None)) is not None:
            room.set()


class _Share:
    """One connection's part of its source's share: what it added, given back when it ends."""

    def __init__(self, shares: SourceShares, source: str) -> None:
        self.shares, self.source, self.held = shares, source, 0

    def full(self) -> bool:
        return self.shares.held(self.source) >= self.shares.cap

    async def room(self) -> None:
        await self.shares.room(self.source)

    def add(self, count: int) -> None:
        self.held += count
        self.shares.add(self.source, count)

    def settle(self, count: int) -> None:
        self.held -= count
        self.shares.settle(self.source, count)

    def close(self) -> None:
        self.settle(self.held)  # frames never answered (the connection broke) are given up


@dataclass
class TcpReceiver:
    """An asyncio TCP server feeding `Ingest`."""

    ingest: PacketIntake
    limits: TcpLimits = field(default_factory=TcpLimits)
    counts: Counter[str] = field(default_factory=Counter)
    _listener: GatedListener | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)
    _shares: SourceShares | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        self._listener = GatedListener(
            "TCP receiver", self._connection, self.limits, self.counts, read_limit=2**20
        )
        self._shares = SourceShares(self.limits.max_unanswered_per_source)
        return await self._listener.start(host, port)

    @property
    def open_connections(self) -> int:
        """Connections held now."""
        return self._listener.gate.open if self._listener is not None else 0

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, give open connections `grace` seconds to finish, then close them."""
        if self._listener is not None:
            await self._listener.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        peer = writer.get_extra_info("peername")
        source = f"tcp:{peer[0]}:{peer[1]}" if peer else "tcp"
        self.counts["connections"] += 1
        acks = AckLine(self.limits.max_inflight)
        assert self._shares is not None
        share = _Share(self._shares, source_key(peer[0]) if peer else "")
        replier = asyncio.create_task(self._reply(acks, writer, share))
        try:
            await self._read_frames(reader, acks, source, share)
            acks.end()
            await replier
        except asyncio.CancelledError:
            # Stopping: end quietly (Python 3.11's stream server logs a cancelled handler).
            replier.cancel()
        except Exception:
            log.exception("TCP connection from %s failed", source)
            replier.cancel()
        finally:
            share.close()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_frames(
        self, reader: asyncio.StreamReader, acks: AckLine, source: str, share: _Share
    ) -> None:
        """Queue one ack future per frame, in order; a full line of acks stops the reading."""
        async for frames in read_frames(reader, self.limits, self.counts):
            if share.full():
                self.counts["source_share_full"] += 1
                await share.room()
            share.add(len(frames))
            enqueue, start = self.ingest.enqueue, 0
            while start < len(frames):
                if acks.full():
                    await acks.room()
                # As many as the ack line has room for, handed over (and stamped) at once.
                ready = frames[start : start + acks.limit - len(acks.futures)]
                now = time.time()
                acks.extend([enqueue(Incoming(data, now, source)) for data in ready])
                start += len(ready)

    async def _reply(self, acks: AckLine, writer: asyncio.StreamWriter, share: _Share) -> None:
        """Write acks in frame order, as many at once as are already decided."""
        answering = True
        while (oldest := await acks.oldest()) is not None:
            await oldest
            out = acks.decided()
            share.settle(len(out))
            answering = await self._write(writer, out, answering)

    async def _write(self, writer: asyncio.StreamWriter, out: bytearray, answering: bool) -> bool:
        if not answering:
            return False  # keep draining so queued packets still reach the store, unanswered
        try:
            writer.write(out)
            await asyncio.wait_for(writer.drain(), self.limits.frame_timeout)
        except ConnectionError:
            self.counts["peer_gone"] += 1
            return False
        except TimeoutError:
            # A peer that does not read its acks would hold the connection forever.
            self.counts["slow_reader"] += 1
            writer.transport.abort()
            return False
        return True


async def open_frames(
    host: str, port: int, *, source: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a frame receiver, from the local address `source` if given."""
    if source is None:
        return await asyncio.open_connection(host, port)
    sock = socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET)
    try:
        # Without this, bind() would reserve the port against every destination, so one
        # source address could not hold more than one ephemeral range of connections.
        sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def send_frames(
    host: str,
    port: int,
    packets: Sequence[bytes],
    timeout: float = 30.0,
    *,
    source: str | None = None,
) -> list[Ack]:
    """Meter-side helper: send packets over one connection, return their acks in order."""
    reader, writer = await asyncio.wait_for(open_frames(host, port, source=source), timeout)
    try:
        writer.write(encode_frames(packets))
        await writer.drain()
        replies = await asyncio.wait_for(reader.readexactly(len(packets)), timeout)
        return [Ack(b) for b in replies]
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass(frozen=True)
class TcpLink:
    """A `MeterLink` over TCP: one connection per exchange, from `source` if given."""

    host: str
    port: int
    source: str | None = None  # a local address, e.g. one of 127.0.0.0/8 to widen the port space

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """Send the packets as frames on a new connection; their acks in order."""
        return await send_frames(self.host, self.port, packets, timeout, source=self.source)
