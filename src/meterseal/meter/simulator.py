"""The meter fleet simulator: many meters sending sealed readings concurrently.

Each meter is one asyncio task with its own connection. A meter keeps every packet until
the head-end acknowledged it (ACCEPTED or REJECTED) and resends after RETRY or a broken
connection, so a head-end crash loses nothing that was not acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.links import MeterLink
from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndPublicKeys, MeterKey, generate_meter_key
from meterseal.meter.faults import Fault, FaultPlan, FraudHook, plan_readings, wire_order
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.model import Reading


@dataclass
class SimulationReport:
    """What the fleet sent and what the head-end answered."""

    sent: Counter[str] = field(default_factory=Counter)  # by injected fault
    acks: Counter[str] = field(default_factory=Counter)  # by ack
    resent: int = 0
    unacknowledged: int = 0  # given up on after all retries: the head-end may not have them
    connection_errors: int = 0
    latencies: list[float] = field(default_factory=list)  # send -> ack, seconds
    seconds: float = 0.0


def seal_meter(
    meter: ProvisionedMeter,
    readings: Sequence[Reading],
    public: HeadEndPublicKeys,
    *,
    plan: FaultPlan,
    seed: int,
    now: dt.datetime,
    fraud: FraudHook | None = None,
) -> list[tuple[Fault, bytes]]:
    """Seal one meter's readings and apply its faults: the packets in wire order."""
    rng = random.Random(f"{seed}:{meter.key.meter_id}")
    planned = plan_readings(list(readings), plan, rng, fraud)
    impostor: MeterKey | None = None
    sealed = []
    for item in planned:
        key = meter.key
        if item.fault is Fault.WRONG_KEY:
            impostor = impostor or generate_meter_key(meter.key.meter_id, meter.key.suite)
            key = impostor
        sealed.append(
            (item, packet.seal(item.reading, key, public, key.suite, now=now, rng=os.urandom))
        )
    return wire_order(sealed, rng)


async def send_meter(
    link: MeterLink,
    meter_id: str,
    packets: list[tuple[Fault, bytes]],
    report: SimulationReport,
    *,
    window: int = 32,
    timeout: float = 30.0,
    retries: int = 50,
    pace: float = 0.0,
) -> None:
    """Send one meter's packets in windows, resending anything not acknowledged."""
    pending = list(packets)
    attempts = 0
    while pending and attempts <= retries:
        batch, rest = pending[:window], pending[window:]
        started = time.perf_counter()
        try:
            acks = await link.exchange(meter_id, [data for _, data in batch], timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            report.connection_errors += 1
            attempts += 1
            await asyncio.sleep(min(0.05 * 2**attempts, 2.0))
            continue
        elapsed = time.perf_counter() - started
        retry = [item for item, ack in zip(batch, acks, strict=True) if ack is Ack.RETRY]
        for (fault, _), ack in zip(batch, acks, strict=True):
            report.acks[ack.name.lower()] += 1
            if ack is not Ack.RETRY:
                report.sent[fault.value] += 1
                report.latencies.append(elapsed)
        report.resent += len(retry)
        pending = retry + rest
        if retry:
            attempts += 1
            await asyncio.sleep(min(0.05 * 2**attempts, 2.0))
        elif pace:
            await asyncio.sleep(pace)
    report.unacknowledged += len(pending)


async def run_fleet(
    wire: dict[str, list[tuple[Fault, bytes]]],
    link: MeterLink,
    *,
    concurrency: int = 1000,
    window: int = 32,
    pace: float = 0.0,
    progress: Callable[[int], object] = lambda _n: None,
    report: SimulationReport | None = None,
) -> SimulationReport:
    """Send every meter's packets concurrently (at most `concurrency` connections at once).

    The counts go into `report` if given, so a caller can watch them while the fleet sends.
    """
    report = report if report is not None else SimulationReport()
    gate = asyncio.Semaphore(concurrency)

    async def one(meter_id: str, packets: list[tuple[Fault, bytes]]) -> None:
        async with gate:
            await send_meter(link, meter_id, packets, report, window=window, pace=pace)
        progress(len(packets))

    started = time.perf_counter()
    await asyncio.gather(*(one(m, p) for m, p in wire.items()))
    report.seconds = time.perf_counter() - started
    return report
