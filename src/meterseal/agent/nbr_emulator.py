"""NBR 14522 meters on the wire: each emulated meter is a serial line on a TCP port (port 0).

The meter side of the standard's conventional communication: while idle the meter sends
ENQ every `enq_every` seconds; a reader answers an ENQ with a COMMAND block; the meter NAKs
a damaged command and otherwise sends its RESPONSE block(s), each repeated on NAK (at most
`MAX_NAKS` times) and followed, once ACKed, by the next block of a composite command. A
meter that hears nothing back within `reply_timeout` drops the sequence and ENQs again.

Faults, one per meter, for the agent to cope with:

* ``bad_crc``: every response block goes out with a wrong CRC;
* ``flaky_crc``: each block's first transmission is damaged, the repeat after a NAK is good;
* ``timeout``: the meter ENQs but never answers a command;
* ``partial``: the meter sends half of each response block, then falls silent;
* ``foreign``: the meter answers with another serial number.

One reader at a time per meter, as on a serial line: a second connection waits its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from meterseal.agent.nbr_frames import COMMAND_SIZE, MAX_NAKS, Command, Response, Signal
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.serial_port import fd_streams, open_pty
from meterseal.errors import MeterFrameError

_SIGNALS = frozenset(int(s) for s in Signal)


class Fault(enum.StrEnum):
    """How an emulated meter misbehaves."""

    NONE = "none"
    BAD_CRC = "bad_crc"
    FLAKY_CRC = "flaky_crc"
    TIMEOUT = "timeout"
    PARTIAL = "partial"
    FOREIGN = "foreign"


@dataclass
class LineCounts:
    """What one emulated meter did: commands answered, blocks sent, NAKs heard, and refused."""

    commands: int = 0
    blocks: int = 0
    naks_heard: int = 0
    commands_refused: int = 0  # damaged commands NAKed


class _Dropped(Exception):
    """The reader stopped answering in the middle of a sequence."""


@dataclass
class TcpLine:
    """An emulated serial line on a TCP port: one reader at a time, `session` per connection."""

    exclusive: ClassVar[bool] = True  # a serial line: a second connection waits its turn
    counts: LineCounts = field(default_factory=LineCounts)
    address: tuple[str, int] = ("", 0)
    _server: asyncio.Server | None = field(default=None, init=False)
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _sessions: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen (port 0: any free port); the address readers connect to."""
        self._server = await asyncio.start_server(self._connection, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    async def start_pty(self) -> str:
        """Serve on a new pseudo-terminal instead; the device path readers open."""
        master, slave, path = open_pty()
        reader, writer, close = await fd_streams(master)
        task = asyncio.create_task(self._pty_session(reader, writer, close, slave))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        self.address = (path, 0)
        return path

    async def _pty_session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        close: Callable[[], None],
        slave: int,
    ) -> None:
        try:
            await self.session(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.CancelledError):
            pass  # cancelled by `stop`, or the line went away
        finally:
            close()
            os.close(slave)

    async def stop(self) -> None:
        """Stop listening and end every session."""
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        async with self._busy if self.exclusive else contextlib.nullcontext():
            try:
                await self.session(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            except asyncio.CancelledError:
                # Only `stop` cancels a session; ending quietly keeps asyncio's stream
                # callback from logging the cancelled handler as an error.
                pass
            finally:
                writer.close()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one reader until it hangs up."""
        raise NotImplementedError


@dataclass(kw_only=True)
class MeterLine(TcpLine):
    """One emulated meter speaking the conventional communication behind one TCP port."""

    meter: EmulatedMeter
    fault: Fault = Fault.NONE
    enq_every: float = 0.05
    reply_timeout: float = 0.5
    wait_every: float = 0.1

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one reader until it hangs up: ENQ while idle, answer each command."""
        while not reader.at_eof():  # a pseudo-terminal never ends: it serves until stopped
            writer.write(bytes([Signal.ENQ]))
            await writer.drain()
            try:
                first = await asyncio.wait_for(reader.readexactly(1), self.enq_every)
            except TimeoutError:
                continue
            if first[0] in _SIGNALS:
                continue  # a late ACK or NAK of a sequence already dropped
            try:
                rest = await asyncio.wait_for(
                    reader.readexactly(COMMAND_SIZE - 1), self.reply_timeout
                )
                command = Command.decode(first + rest)
            except (TimeoutError, MeterFrameError):
                self.counts.commands_refused += 1
                writer.write(bytes([Signal.NAK]))
                continue
            self.counts.commands += 1
            if self.fault is Fault.TIMEOUT:
                continue
            try:
                await self._answer(await self._work(command, writer), reader, writer)
            except _Dropped:
                continue

    async def _work(self, command: Command, writer: asyncio.StreamWriter) -> list[Response]:
        # Working out an answer (a load-profile month from the load model) takes a while:
        # off the event loop, with WAIT every `wait_every` seconds as a busy meter sends.
        work = asyncio.ensure_future(asyncio.to_thread(self.meter.answer, command))
        while True:
            done, _ = await asyncio.wait({work}, timeout=self.wait_every)
            if done:
                return work.result()
            writer.write(bytes([Signal.WAIT]))
            await writer.drain()

    async def _answer(
        self,
        responses: Sequence[Response],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        for response in responses:
            if self.fault is Fault.FOREIGN:
                response = Response(response.code, another_serial(response.meter), response.data)
            frame = response.encode()
            for attempt in range(MAX_NAKS + 1):
                out = frame
                if self.fault is Fault.BAD_CRC or (self.fault is Fault.FLAKY_CRC and not attempt):
                    out = frame[:-1] + bytes([frame[-1] ^ 0xFF])
                if self.fault is Fault.PARTIAL:
                    writer.write(out[: len(out) // 2])
                    await writer.drain()
                    raise _Dropped
                writer.write(out)
                await writer.drain()
                self.counts.blocks += 1
                reply = await self._reply(reader)
                if reply == Signal.ACK:
                    break
                self.counts.naks_heard += 1
            else:
                raise _Dropped

    async def _reply(self, reader: asyncio.StreamReader) -> int:
        try:
            while True:
                octet = (await asyncio.wait_for(reader.readexactly(1), self.reply_timeout))[0]
                if octet in (Signal.ACK, Signal.NAK):
                    return octet
        except TimeoutError:
            raise _Dropped from None


def another_serial(serial: str) -> str:
    """A serial number that is not `serial` (the last digit moved on by one)."""
    return serial[:-1] + str((int(serial[-1]) + 1) % 10)


@dataclass
class Emulator:
    """A fleet of emulated NBR 14522 meters, each on a port of its own."""

    lines: Sequence[TcpLine]

    async def start(self, host: str = "127.0.0.1") -> list[tuple[str, int]]:
        """Start every meter; their addresses, in order."""
        return [await line.start(host) for line in self.lines]

    async def stop(self) -> None:
        """Stop every meter."""
        for line in self.lines:
            await line.stop()
