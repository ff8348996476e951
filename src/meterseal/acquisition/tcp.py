"""TCP receiver: length-prefixed frames in, one status byte per frame out, in order.

Frame: 4-byte big-endian length, then the sealed packet. Reply: one byte per frame
(0 accepted, 1 rejected, 2 retry), in the order the frames arrived. The receiver holds no
key: it moves bytes to `Ingest` and replies once the packet is durable or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.stages import Incoming
from meterseal.crypto.packet import MAX_PACKET_BYTES

_LENGTH = struct.Struct(">I")
READ_SIZE = 256 * 1024
log = logging.getLogger(__name__)


@dataclass
class TcpLimits:
    """Caps that keep one peer from hurting the others."""

    max_frame: int = MAX_PACKET_BYTES
    max_inflight: int = 64  # per connection: stop reading beyond this (back-pressure)
    frame_timeout: float = 10.0  # a started frame must complete within this
    idle_timeout: float = 120.0  # a silent connection is closed after this


@dataclass
class TcpReceiver:
    """An asyncio TCP server feeding `Ingest`."""

    ingest: Ingest
    limits: TcpLimits = field(default_factory=TcpLimits)
    counts: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=2**20, backlog=4096
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, give open connections `grace` seconds to finish, then close them."""
        if self._server is not None:
            self._server.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        peer = writer.get_extra_info("peername")
        source = f"tcp:{peer[0]}:{peer[1]}" if peer else "tcp"
        self.counts["connections"] += 1
        acks: asyncio.Queue[asyncio.Future[Ack] | None] = asyncio.Queue(
            maxsize=self.limits.max_inflight
        )
        replier = asyncio.create_task(self._reply(acks, writer))
        try:
            await self._read_frames(reader, acks, source)
            await acks.put(None)
            await replier
        except asyncio.CancelledError:
            # Stopping: end quietly (Python 3.11's stream server logs a cancelled handler).
            replier.cancel()
        except Exception:
            log.exception("TCP connection from %s failed", source)
            replier.cancel()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_frames(
        self,
        reader: asyncio.StreamReader,
        acks: asyncio.Queue[asyncio.Future[Ack] | None],
        source: str,
    ) -> None:
        """Parse frames out of large reads; queue one ack future per frame, in order."""
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        frame_started = 0.0  # when the first byte of the frame now in `buffer` arrived
        while True:
            offset = 0
            while len(buffer) - offset >= 4:
                (length,) = _LENGTH.unpack_from(buffer, offset)
                if length == 0 or length > self.limits.max_frame:
                    # The stream cannot be resynchronised after a bad length: drop it.
                    self.counts["oversized_frame" if length else "empty_frame"] += 1
                    return
                if len(buffer) - offset - 4 < length:
                    break
                data = bytes(buffer[offset + 4 : offset + 4 + length])
                offset += 4 + length
                await acks.put(self.ingest.enqueue(Incoming(data, time.time(), source)))
            if offset:
                del buffer[:offset]
                frame_started = loop.time()
            if buffer:
                timeout = frame_started + self.limits.frame_timeout - loop.time()
            else:
                timeout = self.limits.idle_timeout
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    chunk = await reader.read(READ_SIZE)
            except TimeoutError:
                self.counts["slow_peer" if buffer else "idle_timeout"] += 1
                return
            except ConnectionError:
                self.counts["connection_lost"] += 1
                return
            if not chunk:
                if buffer:
                    self.counts["truncated_frame"] += 1
                return
            if not buffer:
                frame_started = loop.time()
            buffer += chunk

    async def _reply(
        self, acks: asyncio.Queue[asyncio.Future[Ack] | None], writer: asyncio.StreamWriter
    ) -> None:
        """Write acks in frame order, as many at once as are already decided."""
        answering = True
        while (future := await acks.get()) is not None:
            out = bytearray(((await future).value,))
            finished = False
            while not finished:
                try:
                    following = acks.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if following is None:
                    finished = True
                elif following.done():
                    out.append(following.result().value)
                else:
                    answering = await self._write(writer, out, answering)
                    out = bytearray(((await following).value,))
            answering = await self._write(writer, out, answering)
            if finished:
                return

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


async def send_frames(
    host: str, port: int, packets: Sequence[bytes], timeout: float = 30.0
) -> list[Ack]:
    """Meter-side helper: send packets over one connection, return their acks in order."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(b"".join(_LENGTH.pack(len(data)) + data for data in packets))
        await writer.drain()
        replies = await asyncio.wait_for(reader.readexactly(len(packets)), timeout)
        return [Ack(b) for b in replies]
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass(frozen=True)
class TcpLink:
    """A `MeterLink` over TCP: one connection per exchange."""

    host: str
    port: int

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """Send the packets as frames on a new connection; their acks in order."""
        return await send_frames(self.host, self.port, packets, timeout)
