"""What the driver tests share: an emulated meter's line served on port 0 with a driver open
on it, and what every driver must read off the meter it talks to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from meterseal.agent.driver import InstantaneousValues, MeterDriver
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.meter.profiles import INTERVAL

R = TypeVar("R")
D = TypeVar("D", bound=MeterDriver)


class Line(Protocol):
    """An emulated meter's line: listens on a free port until stopped."""

    async def start(self, host: str = ..., port: int = ...) -> tuple[str, int]: ...
    async def stop(self) -> None: ...


L = TypeVar("L", bound=Line)


def on_line(
    make_line: Callable[[], L],
    open_driver: Callable[[str], Awaitable[D]],
    use: Callable[[D, L], Awaitable[R]],
) -> R:
    """Serve the line `make_line` makes, open a driver on its HOST:PORT, `use` both; close
    the driver and stop the line whatever happens."""

    async def run() -> R:
        line = make_line()  # in the loop: a line's server belongs to it
        host, port = await line.start()
        try:
            driver = await open_driver(f"{host}:{port}")
            try:
                return await use(driver, line)
            finally:
                await driver.close()
        finally:
            await line.stop()

    return asyncio.run(run())


async def reads_what_the_meter_holds(
    driver: MeterDriver, meter: EmulatedMeter, start: int, end: int, at: int
) -> InstantaneousValues:
    """Check what `driver` reads of `meter` (its clock at `at`): the serial, the register,
    the load profile of [start, end), plausible instantaneous values (returned)."""
    assert isinstance(driver, MeterDriver)
    assert (await driver.identify()).serial == meter.serial
    registers = await driver.read_registers()
    assert registers.active_import_wh == meter.register_wh(at)
    assert registers.read_at == at
    profile = await driver.read_load_profile(start, end)
    assert [i.start for i in profile.intervals] == list(range(start, end, INTERVAL))
    assert [i.active_import_wh for i in profile.intervals] == meter.energy(start, end)
    values = await driver.read_instantaneous()
    assert 45 < values.frequency < 55
    assert values.phasor().phases[0].voltage > 200
    return values
