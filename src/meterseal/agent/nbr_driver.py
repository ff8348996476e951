"""The NBR 14522 meter driver: the reader's side of the conventional communication over a stream.

For each command the driver waits for the meter's ENQ, sends the COMMAND block and reads the
RESPONSE block(s): a damaged block is NAKed and read again (at most `MAX_NAKS` times, then
MeterFrameError); a block that does not come within `timeout` makes it send the command again
(at most `attempts` times, then MeterTimeout, or PartialFrame if part of a block came);
a block from another serial number raises WrongMeterSerial at once, and an answer of code
0x39 MeterUnsupported. Composite commands (the load profile) ACK each block and read the next;
a block out of sequence is MeterFrameError at once. WAIT extends a block's deadline, for at
most `busy_limit` seconds in all.

Meter clocks keep local time: `tz` names the meter's zone. Energy is channel 1 of a group
whose quantity code is 01 (active energy delivered), scaled by the meter's Ke.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field

from meterseal.agent.driver import (
    InstantaneousValues,
    LoadProfile,
    LoadState,
    MeterIdentity,
    MeterTarget,
    ProfileInterval,
    Register,
    RegisterSnapshot,
    Unit,
)
from meterseal.agent.nbr_blocks import (
    ACTIVE_IMPORT,
    CHANNELS,
    DAYS,
    HOURS,
    Instantaneous,
    Parameters,
    Registers,
    decode_clock,
    encode_clock,
    profile_request,
    profile_words,
)
from meterseal.agent.nbr_frames import (
    COMPOSITE,
    MAX_NAKS,
    RESPONSE_SIZE,
    Code,
    Command,
    Response,
    Signal,
    block_number,
)
from meterseal.agent.serial_port import open_device
from meterseal.errors import (
    MeterFrameError,
    MeterTimeout,
    MeterUnsupported,
    PartialFrame,
    WrongMeterSerial,
)
from meterseal.model import PhaseMeasurement
from meterseal.runtime.address import parse_address

PROTOCOL = "nbr14522"
_LEADING = frozenset({Signal.ENQ, Signal.WAIT, Signal.ACK, Signal.NAK})


@dataclass
class LinkCounts:
    """What the link needed: commands sent again, blocks NAKed."""

    resent: int = 0
    naks: int = 0


@dataclass
class NbrDriver:
    """A reader session with one NBR 14522 meter over a byte stream (TCP, or a serial device)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    target: MeterTarget
    reader_serial: str = "000001"
    tz: str = "UTC"
    attempts: int = 3
    counts: LinkCounts = field(default_factory=LinkCounts)
    on_close: Callable[[], None] | None = None  # a serial device's transports
    busy_limit: float = 60.0  # a meter that WAITs longer than this for one block is silent
    _parameters: Parameters | None = None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The meter's time zone."""
        return zoneinfo.ZoneInfo(self.tz)

    def unix(self, local: dt.datetime) -> int:
        """The meter's local time as Unix seconds."""
        return int(local.replace(tzinfo=self.zone).timestamp())

    async def identify(self) -> MeterIdentity:
        """The serial number the meter reports (its parameters block's header)."""
        await self.parameters()
        return MeterIdentity(self.target.serial, PROTOCOL)

    async def parameters(self, code: int = Code.PARAMETERS, request: bytes = b"") -> Parameters:
        """The meter's parameters (0x21: current, no demand reset)."""
        (response,) = await self.exchange(Command(code, self.reader_serial, request))
        self._parameters = Parameters.decode(response)
        return self._parameters

    async def read_registers(self) -> RegisterSnapshot:
        """The current registers (0x23), scaled by each channel's Ke."""
        setup = self._parameters or await self.parameters()
        (response,) = await self.exchange(Command(Code.CURRENT_REGISTERS, self.reader_serial))
        registers = Registers.decode(response)
        values = _scaled(registers.totals, setup.ke_mwh)
        active = values[_active_channel(setup)]
        return RegisterSnapshot(
            self.target.serial,
            self.unix(registers.clock),
            round(active),
            tuple(
                Register(f"channel-{k + 1}:{code:02d}", value, _unit(code))
                for k, (code, value) in enumerate(zip(setup.channel_codes, values, strict=True))
            ),
        )

    async def read_load_profile(self, start: int, end: int) -> LoadProfile:
        """The intervals starting in [start, end): 0x51 to say how far back, then 0x52's blocks."""
        setup = self._parameters or await self.parameters()
        back = max(1, self.unix(setup.profile_end) - start)
        hours = math.ceil(back / 3600)
        amount, unit = (hours, HOURS) if hours <= 99 else (math.ceil(back / 86_400), DAYS)
        if amount > 99:
            raise MeterUnsupported("a load profile reaches back at most 99 days")
        request = profile_request(0, amount, unit)
        setup = await self.parameters(Code.PARAMETERS_LOAD_PROFILE, request)
        blocks = await self.exchange(Command(Code.LOAD_PROFILE, self.reader_serial))
        words = profile_words(blocks, setup.profile_words)
        seconds = setup.profile_minutes * 60
        channel = _active_channel(setup)
        count = len(words) // CHANNELS
        last_start = self.unix(setup.profile_end) - seconds
        intervals = []
        for i in range(count):
            begins = last_start - (count - 1 - i) * seconds
            if start <= begins < end:
                group = words[i * CHANNELS : (i + 1) * CHANNELS]
                wh = _scaled(tuple(group), setup.ke_mwh)
                intervals.append(
                    ProfileInterval(
                        begins,
                        seconds,
                        round(wh[channel]),
                        tuple(
                            Register(f"channel-{k + 1}:{c:02d}", wh[k], _unit(c))
                            for k, c in enumerate(setup.channel_codes)
                            if k != channel
                        ),
                    )
                )
        return LoadProfile(self.target.serial, start, end, tuple(intervals))

    async def read_instantaneous(self) -> InstantaneousValues:
        """The instantaneous values (0x14) of the phases that carry a voltage."""
        (response,) = await self.exchange(Command(Code.INSTANTANEOUS, self.reader_serial))
        values = Instantaneous.decode(response)
        phases = tuple(
            PhaseMeasurement(
                float(values.voltage[k]),
                float(values.current[k]),
                _angle(values.power_factor[k], values.reactive_power[k]),
                float(values.active_power[k]),
                float(values.reactive_power[k]),
            )
            for k in range(3)
            if values.voltage[k] > 0
        )
        return InstantaneousValues(
            self.target.serial,
            self.unix(values.clock),
            phases,
            frequency=float(values.frequency[0]),
            power_factor=float(values.power_factor[3]),
            demand=float(values.active_power[3]),
        )

    async def set_load(self, state: LoadState) -> LoadState:
        """Switch the load relay (meterseal's extension code 0xA1)."""
        on = bytes([1 if state is LoadState.CONNECTED else 0])
        (response,) = await self.exchange(Command(Code.SET_LOAD, self.reader_serial, on))
        return LoadState.CONNECTED if response.data[0] == 1 else LoadState.DISCONNECTED

    async def read_load(self) -> LoadState:
        """The relay's state in the parameters block (0x21, which resets nothing)."""
        setup = await self.parameters()
        return LoadState.CONNECTED if setup.load_connected else LoadState.DISCONNECTED

    async def set_clock(self, unix_seconds: int) -> int:
        """Set the meter's clock (meterseal's extension code 0xA2); the meter's time after."""
        local = dt.datetime.fromtimestamp(unix_seconds, self.zone).replace(tzinfo=None)
        command = Command(Code.SET_CLOCK, self.reader_serial, encode_clock(local))
        (response,) = await self.exchange(command)
        when = decode_clock(response.data[:6])
        if when is None:
            raise MeterFrameError("the meter answered the clock setting without a time")
        return self.unix(when)

    async def close(self) -> None:
        """Hang up."""
        if self.on_close is not None:
            self.on_close()
            return
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def exchange(self, command: Command) -> list[Response]:
        """Send `command` and read its response block(s), with the link's retries."""
        frame = command.encode()
        partial = False
        for attempt in range(self.attempts):
            if attempt:
                self.counts.resent += 1
            try:
                await self._await_enq()
                self.writer.write(frame)
                await self.writer.drain()
                return await self._responses(command)
            except PartialFrame:
                partial = True
            except MeterTimeout:
                pass
        what = f"meter {self.target.serial} at {self.target.address}"
        if partial:
            raise PartialFrame(f"{what} sent part of a block and fell silent")
        raise MeterTimeout(f"{what} did not answer 0x{command.code:02x} in {self.attempts} tries")

    async def _await_enq(self) -> None:
        deadline = time.monotonic() + self.target.timeout
        while True:
            octet = await self._read(1, deadline)
            if octet[0] == Signal.ENQ:
                return

    async def _responses(self, command: Command) -> list[Response]:
        blocks: list[Response] = []
        while True:
            block = await self._block()
            try:
                check_block(self.target.serial, command, block)
            except MeterUnsupported:
                await self._signal(Signal.ACK)  # the answer came whole; it is a refusal
                raise
            if command.code not in COMPOSITE:
                await self._signal(Signal.ACK)
                return [block]
            number, last = block_number(block)
            if number != len(blocks) + 1:  # fail fast: endless blocks would never end the loop
                raise MeterFrameError(f"composite block {number} where {len(blocks) + 1} was due")
            await self._signal(Signal.ACK)
            blocks.append(block)
            if last:
                return blocks

    async def _block(self) -> Response:
        for _ in range(MAX_NAKS + 1):
            frame = await self._frame()
            try:
                return Response.decode(frame)
            except MeterFrameError:
                self.counts.naks += 1
                await self._signal(Signal.NAK)
        raise MeterFrameError(
            f"a block from meter {self.target.serial} damaged {MAX_NAKS + 1} times"
        )

    async def _frame(self) -> bytes:
        deadline = time.monotonic() + self.target.timeout
        busy_until = time.monotonic() + self.busy_limit  # WAIT must not hold the agent for ever
        first = await self._read(1, deadline)
        while first[0] in _LEADING:  # ENQs still in flight, or WAIT while the meter works
            if first[0] == Signal.WAIT:
                deadline = min(time.monotonic() + self.target.timeout, busy_until)
            first = await self._read(1, deadline)
        frame = bytearray(first)
        while len(frame) < RESPONSE_SIZE:  # chunks, so a cut block leaves nothing behind
            try:
                chunk = await asyncio.wait_for(
                    self.reader.read(RESPONSE_SIZE - len(frame)),
                    max(0.0, deadline - time.monotonic()),
                )
            except TimeoutError:
                chunk = b""
            if not chunk:
                raise PartialFrame(f"a block cut short after {len(frame)} octets")
            frame += chunk
        return bytes(frame)

    async def _read(self, size: int, deadline: float) -> bytes:
        try:
            return await asyncio.wait_for(
                self.reader.readexactly(size), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise MeterTimeout(f"meter {self.target.serial} silent") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise MeterTimeout(f"meter {self.target.serial} hung up") from exc

    async def _signal(self, signal: Signal) -> None:
        self.writer.write(bytes([signal]))
        await self.writer.drain()


def check_block(serial: str, command: Command, block: Response) -> None:
    """Raise if `block` is not an answer to `command` from meter `serial`."""
    if block.meter != serial:
        raise WrongMeterSerial(serial, block.meter)
    if block.code == Code.NOT_IMPLEMENTED:
        raise MeterUnsupported(f"the meter does not implement 0x{command.code:02x}")
    if block.code != command.code:
        raise MeterFrameError(f"0x{block.code:02x} answered 0x{command.code:02x}")


def _active_channel(setup: Parameters) -> int:
    codes = setup.channel_codes
    return codes.index(ACTIVE_IMPORT) if ACTIVE_IMPORT in codes else 0


def _scaled(pulses: tuple[int, ...], ke_mwh: tuple[int, int, int]) -> tuple[float, ...]:
    return tuple(p * ke / 1000 for p, ke in zip(pulses, ke_mwh, strict=True))


def _unit(code: int) -> Unit:
    return Unit.VARH if code == 0x02 else Unit.WH


def _angle(power_factor: float, reactive: float) -> float:
    pf = min(1.0, max(-1.0, power_factor))
    return math.copysign(math.degrees(math.acos(pf)), reactive)


async def open_nbr(target: MeterTarget, *, tz: str = "UTC", attempts: int = 3) -> NbrDriver:
    """A driver connected to the meter at `target.address`: HOST:PORT, or a serial device path."""
    if target.address.startswith("/"):
        try:
            reader, writer, close = await open_device(target.address)
        except OSError as exc:
            raise MeterTimeout(f"no meter at {target.address}: {exc}") from exc
        return NbrDriver(reader, writer, target, tz=tz, attempts=attempts, on_close=close)
    host, port = parse_address(target.address, 0)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), target.timeout)
    except (OSError, TimeoutError) as exc:
        raise MeterTimeout(f"no meter answers at {target.address}: {exc}") from exc
    return NbrDriver(reader, writer, target, tz=tz, attempts=attempts)
