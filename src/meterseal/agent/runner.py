"""The sealing agent's pass: read each meter through its driver, seal, hand to the head-end.

For every meter the agent opens a driver, reads the load profile of the window, the current
registers and the instantaneous values, turns the intervals into readings
(`agent.readings`), seals each with the meter's key exactly as a simulated meter does
(`crypto.packet.seal`: signed with the meter's key, encrypted to the head-end) and sends them
over a meter link with the simulated meters' resend logic (`meter.simulator.send_meter`).

A meter whose driver fails is skipped and counted by reason (the error's `skip`, or
`driver_fault` for any other exception: one meter never ends the pass; `spool_fault` when its
spool could not be read or written); a meter
without instantaneous values still has its readings sealed. Nothing is sealed from a meter
whose answers could not be trusted (a wrong serial, damaged blocks). Sealed packets the spool
does not keep (outside its window: AgentReport.unspooled) are counted too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meterseal.acquisition.links import MeterLink
from meterseal.agent.driver import (
    DriverFactory,
    InstantaneousValues,
    MeterDriver,
    MeterTarget,
    RegisterSnapshot,
)
from meterseal.agent.readings import readings_of
from meterseal.agent.report import AgentReport
from meterseal.agent.spool import ReadingSpool, Spooled
from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndPublicKeys
from meterseal.errors import (
    ConfigurationError,
    MeterDriverError,
    MeterUnsupported,
    ReadingError,
)
from meterseal.meter.faults import Fault
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.meter.simulator import SimulationReport, send_meter

_NOTHING: Mapping[int, Spooled] = {}
DRIVER_FAULT = "driver_fault"  # the skip reason of a driver failing outside MeterDriverError
SPOOL_FAULT = "spool_fault"  # the skip reason of a spool that could not be read or written


class _SpoolFailed(Exception):
    """The meter's spool could not be read or written (the cause is chained): no driver's fault."""


async def _spooled(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)` on the spool in a thread; a disk or a damaged day file raises _SpoolFailed."""
    try:
        return await asyncio.to_thread(call, *args)
    except (OSError, ConfigurationError) as exc:
        raise _SpoolFailed(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class AgentMeter:
    """A meter the agent reads (target: address and serial) and the identity it seals as."""

    target: MeterTarget
    meter: ProvisionedMeter

    @property
    def meter_id(self) -> str:
        """The meterseal meter id its readings carry."""
        return self.meter.key.meter_id


@dataclass
class MeterOutcome:
    """What became of one meter in a pass."""

    meter_id: str
    serial: str
    readings: int = 0
    registers: RegisterSnapshot | None = None
    skipped: str | None = None  # the reason, if the meter was skipped
    detail: str = ""


@dataclass
class AgentPass:
    """One pass of the agent over its meters: the report and each meter's outcome."""

    report: AgentReport = field(default_factory=AgentReport)
    meters: list[MeterOutcome] = field(default_factory=list)


async def read_and_seal(
    meter: AgentMeter,
    driver: MeterDriver,
    public: HeadEndPublicKeys,
    start: int,
    end: int,
    *,
    now: dt.datetime,
    spooled: Mapping[int, Spooled] = _NOTHING,
) -> tuple[dict[int, Spooled], RegisterSnapshot, int]:
    """The window's sealed readings by counter, the registers, 1 if the meter had no
    instantaneous values. A reading whose counter `spooled` holds is not sealed again: its
    spooled packet is sent as it is (agent.spool)."""
    await driver.identify()
    profile = await driver.read_load_profile(start, end)
    registers = await driver.read_registers()
    values: InstantaneousValues | None = None
    missing = 0
    try:
        values = await driver.read_instantaneous()
    except MeterUnsupported:
        missing = 1
    key = meter.meter.key
    sealed = {
        reading.counter: spooled.get(reading.counter)
        or Spooled(
            reading.timestamp,
            packet.seal(reading, key, public, key.suite, now=now, rng=os.urandom),
        )
        for reading in readings_of(meter.meter_id, profile, values)
    }
    return sealed, registers, missing


async def run_pass(
    meters: Sequence[AgentMeter],
    open_driver: DriverFactory,
    link: MeterLink,
    public: HeadEndPublicKeys,
    start: int,
    end: int,
    *,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    concurrency: int = 16,
    spool: ReadingSpool | None = None,
) -> AgentPass:
    """Read, seal and send the window [start, end) of every meter, `concurrency` at a time;
    with `spool`, what was sealed is on disk before it is sent, and resent as it is."""
    result = AgentPass()
    report = result.report
    sent = SimulationReport()
    gate = asyncio.Semaphore(concurrency)
    began = time.perf_counter()

    async def one(meter: AgentMeter) -> None:
        outcome = MeterOutcome(meter.meter_id, meter.target.serial)
        result.meters.append(outcome)
        async with gate:
            try:
                kept: dict[int, Spooled] = (
                    {} if spool is None else await _spooled(spool.load, meter.meter_id, start, end)
                )
                driver = await open_driver(meter.target)
                try:
                    sealed, outcome.registers, missing = await read_and_seal(
                        meter, driver, public, start, end, now=now(), spooled=kept
                    )
                finally:
                    await driver.close()
                if spool is not None:  # on disk before the first send (agent.spool)
                    at = int(now().timestamp())
                    saved = await _spooled(spool.save, meter.meter_id, kept | sealed, at)
                    report.unspooled.update(stale=saved.stale, future=saved.future)
                    report.future_days_pruned += saved.future_days
            except _SpoolFailed as exc:
                # Not the meter's nor its driver's: the disk is full or a day file is damaged.
                report.skipped[SPOOL_FAULT] += 1
                outcome.skipped, outcome.detail = SPOOL_FAULT, str(exc)
                return
            except MeterDriverError as exc:
                report.skip(exc)
                outcome.skipped, outcome.detail = exc.skip, exc.diagnostics()
                return
            except ReadingError as exc:
                report.skipped["bad_reading"] += 1
                outcome.skipped, outcome.detail = "bad_reading", exc.diagnostics()
                return
            except Exception as exc:
                # A driver that fails outside its own errors (a meter answering what its
                # parser did not foresee) loses that meter, never the other meters' readings.
                report.skipped[DRIVER_FAULT] += 1
                outcome.skipped, outcome.detail = DRIVER_FAULT, f"{type(exc).__name__}: {exc}"
                return
            report.meters_read += 1
            report.skipped["no_instantaneous"] += missing
            packets = [s.packet for s in sealed.values()]
            report.readings_sealed += len(packets)
            report.readings_resent += sum(c in kept for c in sealed)
            outcome.readings = len(packets)
            await send_meter(link, meter.meter_id, [(Fault.NONE, p) for p in packets], sent)

    await asyncio.gather(*(one(m) for m in meters))
    report.acks.update(sent.acks)
    report.readings_published = sent.acks["accepted"]
    report.unacknowledged = sent.unacknowledged
    report.skipped = +report.skipped  # drop zero counts
    report.unspooled = +report.unspooled
    report.seconds = time.perf_counter() - began
    return result
