"""`meterseal demo`: provision a fleet per suite, seal and open its readings, show the result."""

from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from meterseal.crypto import packet
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import SUITES, CipherSuite
from meterseal.deployment import Deployment, init_deployment
from meterseal.errors import InvalidPacket
from meterseal.meter.faults import flip_bit
from meterseal.meter.provisioning import ProvisionedMeter, provision, register_fleet
from meterseal.model import Reading
from meterseal.ui import progress_bar

INTERVAL = 900


@dataclass
class SuiteResult:
    """What one suite did in the demo."""

    suite: CipherSuite
    meters: int = 0
    packets: int = 0
    opened: int = 0
    packet_bytes: int = 0
    seal_seconds: float = 0.0
    open_seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)


def _energy(rng: random.Random, hour: float) -> int:
    # A rough household day (night base, morning and evening peaks) until the fleet simulator lands.
    shape = 0.25 + 0.5 * (7 <= hour < 9) + 0.8 * (18 <= hour < 22)
    return max(1, round(rng.gauss(shape * 250, 30)))


def _readings(meter: ProvisionedMeter, count: int, start: int, rng: random.Random) -> list[Reading]:
    return [
        Reading(
            meter.key.meter_id,
            counter=i + 1,
            timestamp=start + i * INTERVAL,
            interval=INTERVAL,
            energy_wh=_energy(rng, ((start + i * INTERVAL) % 86_400) / 3600),
        )
        for i in range(count)
    ]


def _run_suite(
    deployment: Deployment,
    registry: MeterRegistry,
    meters: list[ProvisionedMeter],
    readings_per_meter: int,
    now: dt.datetime,
    rng: random.Random,
    advance: Callable[[int], object],
) -> SuiteResult:
    result = SuiteResult(meters[0].key.suite, meters=len(meters))
    public = deployment.headend.public()
    start = int(now.timestamp()) - readings_per_meter * INTERVAL
    for meter in meters:
        for reading in _readings(meter, readings_per_meter, start, rng):
            t0 = time.perf_counter()
            blob = packet.seal(reading, meter.key, public, meter.key.suite, now=now, rng=os.urandom)
            t1 = time.perf_counter()
            opened = packet.open(blob, deployment.headend, registry, now=now)
            result.open_seconds += time.perf_counter() - t1
            result.seal_seconds += t1 - t0
            result.packets += 1
            result.packet_bytes += len(blob)
            result.opened += opened.reading == reading
            _tamper(blob, deployment, registry, now, rng, result)
            advance(1)
    return result


def _tamper(
    blob: bytes,
    deployment: Deployment,
    registry: MeterRegistry,
    now: dt.datetime,
    rng: random.Random,
    result: SuiteResult,
) -> None:
    """Flip one random bit of the packet: it must be refused."""
    try:
        packet.open(flip_bit(blob, rng), deployment.headend, registry, now=now)
    except InvalidPacket as exc:
        result.rejected[exc.reason.value] += 1
    else:
        result.rejected["ACCEPTED-TAMPERED"] += 1


def run_demo(
    console: Console, *, meters_per_suite: int, readings_per_meter: int, seed: int
) -> list[SuiteResult]:
    """Run the demo and print its summary table; returns the per-suite results."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="meterseal-demo-") as tmp:
        with console.status(
            "creating a deployment (CA, head-end RSA-4096/P-256/X25519/ML-KEM keys)"
        ):
            deployment = init_deployment(Path(tmp) / "deployment", now=now)
        registry = MeterRegistry(deployment.ca_cert)
        fleets = {}
        for suite in SUITES.values():
            fleet = provision(
                deployment.ca_key,
                deployment.ca_cert,
                meters_per_suite,
                suite,
                now=now,
                prefix=suite.name.upper(),
                workers=1,
            )
            register_fleet(registry, fleet)
            fleets[suite.name] = fleet
        total = len(SUITES) * meters_per_suite * readings_per_meter
        progress = progress_bar(console)
        results = []
        with progress:
            task = progress.add_task("sealing and opening readings", total=total)
            for fleet in fleets.values():
                results.append(
                    _run_suite(
                        deployment,
                        registry,
                        fleet,
                        readings_per_meter,
                        now,
                        rng,
                        lambda n: progress.advance(task, n),
                    )
                )
    console.print(_table(results))
    return results


def _table(results: list[SuiteResult]) -> Table:
    table = Table(
        title="meterseal demo: sealed readings, meter → head-end (one process, this machine)"
    )
    for column in (
        "suite",
        "meters",
        "packets",
        "bytes/packet",
        "seal/s",
        "open/s",
        "opened ok",
        "tampered → rejected",
    ):
        table.add_column(column, justify="right" if column != "suite" else "left")
    for r in results:
        refused = sum(v for k, v in r.rejected.items() if k != "ACCEPTED-TAMPERED")
        table.add_row(
            f"{r.suite.name}",
            str(r.meters),
            str(r.packets),
            f"{r.packet_bytes / max(r.packets, 1):.0f}",
            f"{r.packets / max(r.seal_seconds, 1e-9):,.0f}",
            f"{r.packets / max(r.open_seconds, 1e-9):,.0f}",
            f"{r.opened}/{r.packets}",
            f"{refused}/{r.packets}",
        )
    table.caption = "refusal reasons: " + "; ".join(
        f"{r.suite.name} " + ", ".join(f"{k} {v}" for k, v in sorted(r.rejected.items()))
        for r in results
    )
    return table
