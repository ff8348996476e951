"""The sealed, asynchronous NBR 14522: messages, replays, tampering, and the link's faults."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from meterseal.agent.driver import MeterTarget
from meterseal.agent.nbr_emulator import Fault
from meterseal.agent.nbr_frames import Code, Command, Response
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.nbr_sealed import LENGTH, Party, Sealer, message_length, new_party
from meterseal.agent.nbr_sealed_link import SealedMeterLine, SealedNbrDriver, open_sealed_nbr
from meterseal.errors import (
    MeterDriverError,
    MeterTimeout,
    PartialFrame,
    SealedMessageRefused,
    WrongMeterSerial,
)
from meterseal.meter.load import Fleet
from meterseal.meter.profiles import INTERVAL
from tests.agent.drivers import on_line
from tests.conftest import NOW

T = int(NOW.timestamp())
R = TypeVar("R")
READER = new_party("reader-000001")
METER = new_party("30000001")


def _pair(me: Party, peer: Party) -> tuple[Sealer, Sealer]:
    return Sealer(me, peer.peer(), os.urandom), Sealer(peer, me.peer(), os.urandom)


def _body(sealed: bytes) -> bytes:
    assert message_length(sealed[:LENGTH]) == len(sealed) - LENGTH
    return sealed[LENGTH:]


def test_a_sealed_message_opens_for_its_recipient_only() -> None:
    reader, meter = _pair(READER, METER)
    frame = Command(Code.CURRENT_REGISTERS, "000001").encode()
    sealed = _body(reader.seal(7, (frame,)))
    assert frame not in sealed  # encrypted
    message = meter.open(sealed)
    assert (message.request, message.counter, message.frames) == (7, 1, (frame,))
    stranger = Sealer(new_party("30000001"), READER.peer(), os.urandom)
    with pytest.raises(SealedMessageRefused):
        stranger.open(sealed)  # same name, other keys


def test_replayed_tampered_and_forged_messages_are_refused() -> None:
    reader, meter = _pair(READER, METER)
    first = _body(reader.seal(1, (b"x",)))
    meter.open(first)
    with pytest.raises(SealedMessageRefused, match="replay"):
        meter.open(first)
    second = bytearray(_body(reader.seal(2, (b"y",))))
    second[-20] ^= 1
    with pytest.raises(SealedMessageRefused, match="did not open"):
        meter.open(bytes(second))
    forger = Sealer(new_party("reader-000001"), METER.peer(), os.urandom)  # signs with other keys
    with pytest.raises(SealedMessageRefused):
        meter.open(_body(forger.seal(3, (b"z",))))
    with pytest.raises(SealedMessageRefused):
        message_length(bytes(4))


def _with_line(
    fault: Fault, use: Callable[[SealedNbrDriver, EmulatedMeter], Awaitable[R]], timeout: float
) -> R:
    meter = EmulatedMeter(METER.name, 3, Fleet(7), lambda: T)

    def line() -> SealedMeterLine:
        return SealedMeterLine(meter=meter, me=METER, reader=READER.peer(), fault=fault)

    async def opened(address: str) -> SealedNbrDriver:
        target = MeterTarget(address, METER.name, timeout=timeout)
        return await open_sealed_nbr(target, READER, METER.peer(), attempts=2)

    return on_line(line, opened, lambda driver, _: use(driver, meter))


def test_the_sealed_driver_reads_what_the_meter_holds_with_requests_in_flight_together() -> None:
    end = T - T % INTERVAL
    start = end - 6 * 3600

    async def read(driver: SealedNbrDriver, meter: EmulatedMeter) -> None:
        registers, values = await asyncio.gather(
            driver.read_registers(), driver.read_instantaneous()
        )
        assert registers.active_import_wh == meter.register_wh(T)
        assert values.read_at == T
        profile = await driver.read_load_profile(start, end)
        assert [i.active_import_wh for i in profile.intervals] == meter.energy(start, end)

    _with_line(Fault.NONE, read, timeout=5.0)


# A fault the meter answers (a bad CRC, another serial) gets a long timeout, so a loaded
# machine's slow answer is not taken for silence; the silent ones wait less.
@pytest.mark.parametrize(
    ("fault", "error", "timeout"),
    [
        (Fault.BAD_CRC, SealedMessageRefused, 10.0),
        (Fault.TIMEOUT, MeterTimeout, 0.5),
        (Fault.PARTIAL, PartialFrame, 2.0),
        (Fault.FOREIGN, WrongMeterSerial, 10.0),
    ],
)
def test_each_fault_of_the_sealed_link_raises_its_driver_error(
    fault: Fault, error: type[MeterDriverError], timeout: float
) -> None:
    async def read(driver: SealedNbrDriver, _: EmulatedMeter) -> None:
        with pytest.raises(error):
            await driver.read_registers()

    _with_line(fault, read, timeout=timeout)


def test_answers_are_paired_by_request_not_by_order() -> None:
    async def run() -> list[int]:
        meter_side: dict[str, Sealer] = {}

        async def backwards(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sealer = meter_side["sealer"]
            requests = []
            for _ in range(2):
                length = message_length(await reader.readexactly(LENGTH))
                message = sealer.open(await reader.readexactly(length))
                requests.append((message.request, Command.decode(message.frames[0])))
            for request, command in reversed(requests):  # the second request answered first
                data = bytes([command.code]) + bytes(5)
                response = Response(command.code, METER.name, data)
                writer.write(sealer.seal(request, (response.encode(),)))
            await writer.drain()
            await reader.read()

        meter_side["sealer"] = Sealer(METER, READER.peer(), os.urandom)
        server = await asyncio.start_server(backwards, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = MeterTarget(f"127.0.0.1:{port}", METER.name, timeout=5.0)
        driver = await open_sealed_nbr(target, READER, METER.peer())
        try:
            answers = await asyncio.gather(
                driver.exchange(Command(0x23, "000001")), driver.exchange(Command(0x14, "000001"))
            )
        finally:
            await driver.close()
            server.close()
        return [response.code for (response,) in answers]

    assert asyncio.run(run()) == [0x23, 0x14]


async def _send(address: tuple[str, int], data: bytes) -> bytes:
    """The first answer's length prefix to `data` sent on a new connection (b"" if it hung up)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(LENGTH), 30.0)
    finally:
        writer.close()


def test_a_command_replayed_on_a_new_connection_is_refused() -> None:
    meter = EmulatedMeter(METER.name, 3, Fleet(7), lambda: T)

    async def run() -> tuple[SealedMeterLine, int]:
        line = SealedMeterLine(meter=meter, me=METER, reader=READER.peer())
        address = await line.start()
        reader = Sealer(READER, METER.peer(), os.urandom)
        disconnect = Command(Code.SET_LOAD, "000001", b"\0").encode()
        recorded = reader.seal(1, (disconnect,))
        try:
            assert await _send(address, recorded)  # answered
            # later, on another connection: the recording, then a fresh command
            fresh = reader.seal(2, (Command(Code.INSTANTANEOUS, "000001").encode(),))
            conn_reader, writer = await asyncio.open_connection(*address)
            writer.write(recorded + fresh)
            await writer.drain()
            length = message_length(await asyncio.wait_for(conn_reader.readexactly(LENGTH), 30))
            answer = reader.open(await conn_reader.readexactly(length))
            writer.close()
        finally:
            await line.stop()
        return line, answer.request

    line, answered = asyncio.run(run())
    assert answered == 2  # only the fresh command was answered
    assert (line.counts.commands, line.counts.commands_refused) == (2, 1)


def test_a_stranger_holding_the_line_or_sending_garbage_does_not_stop_the_reader() -> None:
    meter = EmulatedMeter(METER.name, 3, Fleet(7), lambda: T)

    async def run() -> tuple[int, SealedMeterLine]:
        line = SealedMeterLine(meter=meter, me=METER, reader=READER.peer())
        address = await line.start()
        _, idle = await asyncio.open_connection(*address)  # connects first, says nothing
        try:
            assert await _send(address, b"\xff" * LENGTH + b"junk") == b""  # dropped at once
            target = MeterTarget(f"{address[0]}:{address[1]}", METER.name, timeout=5.0)
            driver = await open_sealed_nbr(target, READER, METER.peer())
            try:
                return (await driver.read_registers()).active_import_wh, line
            finally:
                await driver.close()
        finally:
            idle.close()
            await line.stop()

    wh, line = asyncio.run(asyncio.wait_for(run(), 10.0))
    assert wh == meter.register_wh(T)
    assert line.counts.commands_refused == 1
