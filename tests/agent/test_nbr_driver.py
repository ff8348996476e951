"""The NBR 14522 driver against emulated meters: what it reads, and each fault it meets."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from meterseal.agent.driver import LoadState, MeterTarget
from meterseal.agent.nbr_driver import NbrDriver, open_nbr
from meterseal.agent.nbr_emulator import Fault, MeterLine
from meterseal.agent.nbr_frames import (
    RESPONSE_SIZE,
    Code,
    Command,
    Response,
    Signal,
    block_header,
)
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.errors import (
    MeterDriverError,
    MeterFrameError,
    MeterTimeout,
    PartialFrame,
    WrongMeterSerial,
)
from meterseal.meter.load import Fleet
from meterseal.meter.profiles import INTERVAL
from tests.agent.drivers import on_line, reads_what_the_meter_holds
from tests.conftest import NOW

T = int(NOW.timestamp())
ZONE = "America/Sao_Paulo"
R = TypeVar("R")


def _meter(index: int = 0) -> EmulatedMeter:
    return EmulatedMeter(f"{10_000_001 + index}", index, Fleet(7), lambda: T, tz=ZONE)


def _with_driver(
    meter: EmulatedMeter,
    fault: Fault,
    use: Callable[[NbrDriver, MeterLine], Awaitable[R]],
    timeout: float = 3.0,
) -> R:
    # A meter working out a load-model month holds the GIL for a while: generous timeouts,
    # except where a timeout is the point.
    async def opened(address: str) -> NbrDriver:
        return await open_nbr(MeterTarget(address, meter.serial, timeout=timeout), tz=ZONE,
                              attempts=2)  # fmt: skip

    return on_line(lambda: MeterLine(meter=meter, fault=fault), opened, use)


def test_the_driver_reads_what_the_meter_holds() -> None:
    meter = _meter()
    end = T - T % INTERVAL

    async def read(driver: NbrDriver, _: MeterLine) -> None:
        values = await reads_what_the_meter_holds(driver, meter, end - 86_400, end, T)
        assert values.read_at == T

    _with_driver(meter, Fault.NONE, read)


def test_a_window_inside_the_profile_gets_only_its_intervals() -> None:
    meter = _meter(1)
    end = T - T % INTERVAL - 3 * INTERVAL
    start = end - 5 * INTERVAL

    async def read(driver: NbrDriver, _: MeterLine) -> list[int]:
        profile = await driver.read_load_profile(start, end)
        return [i.start for i in profile.intervals]

    assert _with_driver(meter, Fault.NONE, read) == list(range(start, end, INTERVAL))


def test_the_load_relay_and_the_clock_are_set() -> None:
    meter = _meter(2)

    async def act(driver: NbrDriver, _: MeterLine) -> None:
        assert await driver.set_load(LoadState.DISCONNECTED) is LoadState.DISCONNECTED
        assert meter.load_connected is False
        values = await driver.read_instantaneous()
        assert values.demand == 0.0
        assert await driver.set_load(LoadState.CONNECTED) is LoadState.CONNECTED
        assert await driver.set_clock(T + 120) == T + 120
        assert int(meter.now()) == T + 120

    _with_driver(meter, Fault.NONE, act)


def test_damaged_blocks_are_naked_and_read_again() -> None:
    async def read(driver: NbrDriver, line: MeterLine) -> int:
        await driver.read_registers()
        return driver.counts.naks

    assert _with_driver(_meter(3), Fault.FLAKY_CRC, read) == 2  # parameters, registers


# A fault the meter answers (a bad CRC, another serial) waits long, so a loaded machine's
# slow answer is not taken for silence; a partial block waits for the rest 2 s, silence 0.3 s.
@pytest.mark.parametrize(
    ("fault", "error", "skip", "timeout"),
    [
        (Fault.BAD_CRC, MeterFrameError, "bad_frame", 10.0),
        (Fault.TIMEOUT, MeterTimeout, "timeout", 0.3),
        (Fault.PARTIAL, PartialFrame, "partial_frame", 2.0),
        (Fault.FOREIGN, WrongMeterSerial, "wrong_serial", 10.0),
    ],
)
def test_each_fault_raises_its_driver_error(
    fault: Fault, error: type[MeterDriverError], skip: str, timeout: float
) -> None:
    async def read(driver: NbrDriver, _: MeterLine) -> None:
        with pytest.raises(error) as caught:
            await driver.read_registers()
        assert caught.value.skip == skip

    _with_driver(_meter(4), fault, read, timeout=timeout)


def test_a_meter_that_is_not_there_is_a_timeout() -> None:
    async def run() -> None:
        line = MeterLine(meter=_meter())
        host, port = await line.start()
        await line.stop()
        with pytest.raises(MeterTimeout):
            await open_nbr(MeterTarget(f"{host}:{port}", "10000001", timeout=0.3))

    asyncio.run(run())


def test_clocks_are_read_in_the_meters_zone() -> None:
    meter = _meter(5)

    async def read(driver: NbrDriver, _: MeterLine) -> dt.datetime:
        return (await driver.parameters()).clock

    local = _with_driver(meter, Fault.NONE, read)
    assert local == NOW.astimezone(dt.timezone(dt.timedelta(hours=-3))).replace(tzinfo=None)


def test_the_driver_reads_a_meter_on_a_pseudo_terminal() -> None:
    meter = _meter(6)

    async def run() -> tuple[int, int]:
        line = MeterLine(meter=meter)
        path = await line.start_pty()
        assert path.startswith("/dev/")
        driver = await open_nbr(MeterTarget(path, meter.serial, timeout=3.0), tz=ZONE)
        try:
            registers = await driver.read_registers()
            again = await driver.read_registers()
        finally:
            await driver.close()
            await line.stop()
        assert again == registers
        return registers.active_import_wh, line.counts.commands

    wh, commands = asyncio.run(run())
    assert wh == meter.register_wh(T)
    assert commands == 3  # parameters, registers, registers


def test_a_device_that_is_not_there_is_a_timeout() -> None:
    with pytest.raises(MeterTimeout, match="no meter at /dev/"):
        asyncio.run(open_nbr(MeterTarget("/dev/nonexistent-meter", "10000001")))


def test_the_meter_naks_a_damaged_command_and_answers_it_repeated() -> None:
    async def run() -> tuple[int, bytes, int]:
        line = MeterLine(meter=_meter(7))
        host, port = await line.start()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            frame = bytearray(Command(Code.PARAMETERS, "000001").encode())
            await reader.readuntil(bytes([Signal.ENQ]))
            writer.write(bytes(frame[:-1]) + bytes([frame[-1] ^ 0xFF]))
            answer = await reader.readuntil(bytes([Signal.NAK]))
            writer.write(bytes(frame))
            block = bytearray()
            while len(block) < RESPONSE_SIZE:  # ENQs sent before the command are skipped
                octet = await reader.readexactly(1)
                if block or octet[0] != Signal.ENQ:
                    block += octet
            writer.write(bytes([Signal.ACK]))
            await writer.drain()
            return line.counts.commands_refused, answer[-1:], Response.decode(bytes(block)).code
        finally:
            writer.close()
            await line.stop()

    refused, nak, code = asyncio.run(run())
    assert (refused, nak, code) == (1, bytes([Signal.NAK]), Code.PARAMETERS)


def _rogue(
    send: Callable[[asyncio.StreamWriter, Command], Awaitable[None]], timeout: float = 0.3
) -> BaseException:
    """What the driver raises against a meter that answers each command with `send`."""

    async def meter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes([Signal.ENQ]))
        command = Command.decode(await reader.readexactly(66))
        with contextlib.suppress(ConnectionError):
            await send(writer, command)

    async def run() -> BaseException:
        server = await asyncio.start_server(meter, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = MeterTarget(f"127.0.0.1:{port}", "10000001", timeout=timeout)
        driver = await open_nbr(target, attempts=1)
        driver.busy_limit = 1.0
        try:
            await asyncio.wait_for(driver.exchange(Command(Code.LOAD_PROFILE, "000001")), 20.0)
        except (MeterDriverError, TimeoutError) as exc:
            return exc
        finally:
            await driver.close()
            server.close()
        raise AssertionError("the rogue meter's answer was taken")

    return asyncio.run(run())


def test_a_meter_that_says_wait_for_ever_is_a_timeout() -> None:
    async def wait_for_ever(writer: asyncio.StreamWriter, _: Command) -> None:
        while True:
            writer.write(bytes([Signal.WAIT]))
            await writer.drain()
            await asyncio.sleep(0.05)

    assert isinstance(_rogue(wait_for_ever), MeterTimeout)


def test_a_composite_answer_out_of_sequence_is_refused_at_once() -> None:
    async def never_last(writer: asyncio.StreamWriter, command: Command) -> None:
        while True:  # block 1 again and again, never the last
            writer.write(Response(command.code, "10000001", block_header(1, False)).encode())
            await writer.drain()
            await asyncio.sleep(0.01)  # drain() does not yield below the buffer's high mark

    error = _rogue(never_last, timeout=10.0)  # generous: a late block is not the point
    assert isinstance(error, MeterFrameError), error
    assert "block 1 where 2 was due" in str(error)


def test_a_command_with_parameters_the_meter_cannot_read_is_an_occurrence() -> None:
    meter = _meter()

    async def use(driver: NbrDriver, line: MeterLine) -> None:
        for command in (
            Command(Code.SET_CLOCK, "000001", b"\xff" * 6),  # not BCD
            Command(Code.PARAMETERS_LOAD_PROFILE, "000001", b"\x00\x00\x07\x09"),  # unit 9
        ):
            with pytest.raises(MeterFrameError, match=f"0x40 answered 0x{command.code:02x}"):
                await driver.exchange(command)
        registers = await driver.read_registers()  # the same connection goes on
        assert registers.active_import_wh == meter.register_wh(T)
        assert line.counts.commands == 4  # and 0x21, 0x23 for the registers

    _with_driver(meter, Fault.NONE, use)
