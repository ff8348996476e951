"""The asynchronous, encrypted NBR 14522 on TCP: the meter's line and the reader's driver.

Messages are `nbr_sealed`'s: length-prefixed, signed and encrypted, each carrying a request
id. The meter answers every request it can open in a task of its own, so answers may leave
in another order than the requests came; the driver pairs them by request id. There is no
ENQ, ACK or NAK: the seal covers integrity (a tampered message does not open) and TCP
delivery. The blocks inside are the standard's, so the driver decodes them as the
conventional one does (`NbrDriver`), and a block's CRC is still checked.

Every connection is served at once (no serial line to wait for: a stranger holding a
connection open does not keep the reader out), and one `Sealer` serves them all, so a message
recorded on one connection and replayed on another is refused as a replay; the driver's
counter starts at the reader's clock (nanoseconds) so it keeps rising across connections,
and its request ids start at a random number so a recorded answer pairs with no request of
a later connection. A length prefix out of bounds ends the connection: nothing after it
parses. Refused messages are counted (`commands_refused`).

The emulated meter's faults here: ``bad_crc`` tampers with each sealed message (it does not
open: SealedMessageRefused), ``timeout`` never answers, ``partial`` sends half a message
and falls silent, ``foreign`` answers with another meter's serial number.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import ClassVar

from meterseal.agent.driver import MeterTarget
from meterseal.agent.nbr_driver import NbrDriver, check_block
from meterseal.agent.nbr_emulator import Fault, TcpLine, another_serial
from meterseal.agent.nbr_frames import Command, Response
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.nbr_sealed import LENGTH, Party, Peer, Sealer, message_length
from meterseal.errors import (
    MeterDriverError,
    MeterFrameError,
    MeterTimeout,
    PartialFrame,
    SealedMessageRefused,
)
from meterseal.runtime.address import parse_address


@dataclass(kw_only=True)
class SealedMeterLine(TcpLine):
    """An emulated meter answering sealed requests from one reader on one TCP port."""

    exclusive: ClassVar[bool] = False  # every connection at once: see the module's docstring
    meter: EmulatedMeter
    me: Party  # named by the meter's serial number
    reader: Peer
    fault: Fault = Fault.NONE
    _working: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _sealer: Sealer = field(init=False)

    def __post_init__(self) -> None:
        self._sealer = Sealer(self.me, self.reader, os.urandom)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Open each request and answer it in a task of its own."""
        sealer = self._sealer  # one for every connection: the replay counter outlives them
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    length = message_length(await reader.readexactly(LENGTH))
                except SealedMessageRefused:
                    self.counts.commands_refused += 1
                    return
                data = await reader.readexactly(length)
                try:
                    message = sealer.open(data)
                    command = Command.decode(message.frames[0])
                except (SealedMessageRefused, MeterFrameError, IndexError):
                    self.counts.commands_refused += 1
                    continue
                self.counts.commands += 1
                task = asyncio.create_task(self._answer(sealer, message.request, command, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _answer(
        self, sealer: Sealer, request: int, command: Command, writer: asyncio.StreamWriter
    ) -> None:
        if self.fault is Fault.TIMEOUT:
            return
        async with self._working:  # one command at a time changes the meter's state
            responses = await asyncio.to_thread(self.meter.answer, command)
        if self.fault is Fault.FOREIGN:
            responses = [Response(r.code, another_serial(r.meter), r.data) for r in responses]
        sealed = sealer.seal(request, tuple(r.encode() for r in responses))
        if self.fault is Fault.BAD_CRC:
            sealed = sealed[:-20] + bytes([sealed[-20] ^ 0x01]) + sealed[-19:]
        if self.fault is Fault.PARTIAL:
            sealed = sealed[: len(sealed) // 2]
        self.counts.blocks += len(responses)
        writer.write(sealed)
        await writer.drain()


@dataclass(kw_only=True)
class SealedNbrDriver(NbrDriver):
    """The reader's side of the sealed link: requests paired with answers by request id."""

    sealer: Sealer
    _requests: itertools.count[int] = field(
        default_factory=lambda: itertools.count(int.from_bytes(os.urandom(6), "big"))
    )
    _pending: dict[int, asyncio.Future[tuple[bytes, ...]]] = field(default_factory=dict)
    _receiving: bool = False  # a message's length came, not yet all of it
    _listener: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading answers."""
        self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        failure: MeterDriverError = MeterTimeout(f"meter {self.target.serial} hung up")
        try:
            while True:
                length = message_length(await self.reader.readexactly(LENGTH))
                self._receiving = True
                data = await self.reader.readexactly(length)
                self._receiving = False
                message = self.sealer.open(data)
                waiter = self._pending.pop(message.request, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message.frames)
        except SealedMessageRefused as exc:
            failure = exc
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(failure)

    async def exchange(self, command: Command) -> list[Response]:
        """Send `command` sealed and wait for its answer; resend it after a silence."""
        for attempt in range(self.attempts):
            if attempt:
                self.counts.resent += 1
            request = next(self._requests)
            waiter: asyncio.Future[tuple[bytes, ...]] = asyncio.get_running_loop().create_future()
            self._pending[request] = waiter
            self.writer.write(self.sealer.seal(request, (command.encode(),)))
            await self.writer.drain()
            try:
                frames = await asyncio.wait_for(waiter, self.target.timeout)
            except TimeoutError:
                self._pending.pop(request, None)
                if self._receiving:  # the stream is cut mid-message: nothing after it parses
                    break
                continue
            blocks = [Response.decode(f) for f in frames]
            if not blocks:
                raise MeterFrameError(f"an empty answer to 0x{command.code:02x}")
            for block in blocks:
                check_block(self.target.serial, command, block)
            return blocks
        what = f"meter {self.target.serial} at {self.target.address}"
        if self._receiving:
            raise PartialFrame(f"{what} sent part of a sealed message and fell silent")
        raise MeterTimeout(f"{what} did not answer 0x{command.code:02x} in {self.attempts} tries")

    async def close(self) -> None:
        """Stop reading answers and hang up."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await super().close()


async def open_sealed_nbr(
    target: MeterTarget, me: Party, meter: Peer, *, tz: str = "UTC", attempts: int = 3
) -> SealedNbrDriver:
    """A sealed-link driver connected to the meter at `target.address` (HOST:PORT)."""
    host, port = parse_address(target.address, 0)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), target.timeout)
    except (OSError, TimeoutError) as exc:
        raise MeterTimeout(f"no meter answers at {target.address}: {exc}") from exc
    driver = SealedNbrDriver(
        reader=reader,
        writer=writer,
        target=target,
        tz=tz,
        attempts=attempts,
        sealer=Sealer(me, meter, os.urandom, sent=time.time_ns()),
    )
    driver.start()
    return driver
