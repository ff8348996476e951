"""`meterseal demo`: the whole journey of a reading in one process, on SQLite.

A deployment and a mixed fleet are created in a scratch directory, the fleet's consumption
(BDEW profiles) is sealed with faults injected, sent over TCP to a head-end running the
trusted stages, and stored. The summary shows what was accepted, what was refused and why,
throughput, acquisition latency and the utility's anonymized regional view.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from meterseal.acquisition.tcp import TcpLink
from meterseal.crypto.suites import ED25519, P256, PAPER, PQ, CipherSuite
from meterseal.deployment import Deployment, init_deployment
from meterseal.headend import HeadEnd, HeadEndReport, TrustedMaterial
from meterseal.meter.faults import FaultPlan
from meterseal.meter.load import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.storage import RegionalLoad, Store
from meterseal.ui import milliseconds as _ms
from meterseal.ui import progress_bar

# Share of the fleet per suite: mostly the default, a few of each other suite to show them.
FLEET_MIX: tuple[tuple[CipherSuite, float], ...] = ((P256, 0.85), (ED25519, 0.08), (PQ, 0.05))
PAPER_METERS = 2  # RSA-4096 key transport is slow to open; two meters show that it works


@dataclass
class DemoResult:
    """What the demo measured."""

    simulation: SimulationReport
    headend: HeadEndReport
    stored_counts: dict[str, int]
    regional: list[RegionalLoad]
    revoked_meter: str


def provision_mix(deployment: Deployment, meters: int, now: dt.datetime) -> list[ProvisionedMeter]:
    """About `meters` meters across the suites (FLEET_MIX), plus two paper-suite meters."""
    fleet: list[ProvisionedMeter] = []
    counts = [(suite, max(1, round(meters * share))) for suite, share in FLEET_MIX]
    for suite, count in [*counts, (PAPER, PAPER_METERS)]:
        fleet += provision(
            deployment.ca_key, deployment.ca_cert, count, suite, now=now, prefix=suite.name.upper()
        )
    return fleet


def register(store: Store, deployment: Deployment, fleet: list[ProvisionedMeter]) -> None:
    """Admit the fleet's certificates (chain-checked) into the store's meter registry."""
    store.register_meters(fleet_records(deployment.ca_cert, fleet), now=dt.datetime.now(dt.UTC))


async def _journey(
    headend: HeadEnd, wire: Wire, advance: Callable[[int], object]
) -> SimulationReport:
    endpoints = await headend.start()
    host, port = endpoints["tcp"].rsplit(":", 1)
    try:
        return await run_fleet(
            wire, TcpLink(host, int(port)), concurrency=500, window=32, progress=advance
        )
    finally:
        await headend.stop()


def run_demo(
    console: Console, *, meters: int = 120, days: int = 2, faults: float = 0.02, seed: int = 7
) -> DemoResult:
    """Run the journey and print its summary; returns what was measured."""
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="meterseal-demo-") as tmp:
        with console.status("creating a deployment (CA; head-end RSA-4096, P-256, X25519, ML-KEM)"):
            deployment = init_deployment(Path(tmp) / "deployment", now=now)
        with console.status("provisioning meters (keys and CA-signed certificates)"):
            fleet = provision_mix(deployment, meters, now)
        store = Store.open(f"sqlite:///{tmp}/meterseal.db")
        try:
            register(store, deployment, fleet)
            revoked = fleet[1].key.meter_id
            store.revoke_meter(revoked, now)  # a stolen meter: all its packets must be refused
            start = (int(now.timestamp()) // INTERVAL - days * 96) * INTERVAL
            work = Workload(
                fleet,
                deployment.headend.public(),
                start,
                days * 96,
                FaultPlan.every_fault(faults),
                seed=seed,
            )
            with progress_bar(console) as bar:
                task = bar.add_task("meters seal their readings", total=len(fleet))
                wire = seal_workload(work, now=now, progress=lambda n: bar.advance(task, n))
            headend = HeadEnd(TrustedMaterial.of(deployment), store)
            with progress_bar(console) as bar:
                total = sum(len(p) for p in wire.values())
                task = bar.add_task("packets: meters → TCP → trusted stages → SQLite", total=total)
                simulation = asyncio.run(_journey(headend, wire, lambda n: bar.advance(task, n)))
            result = DemoResult(
                simulation,
                headend.report(),
                store.counters(),
                store.regional_load(start, start + days * 86_400, 3600),
                revoked,
            )
        finally:
            store.close()
    print_summary(console, result)
    return result


def print_summary(console: Console, result: DemoResult) -> None:
    """The acquisition table, the injected faults and the utility's regional view."""
    sim, head = result.simulation, result.headend
    table = Table(title="acquisition: what the head-end made durable (store counters)")
    table.add_column("outcome")
    table.add_column("packets", justify="right")
    for outcome, count in sorted(result.stored_counts.items(), key=lambda kv: -kv[1]):
        kind = "accepted" if outcome in ("stored", "duplicate") else "rejected"
        table.add_row(f"{kind}: {outcome}", f"{count:,}")
    sent = sum(sim.sent.values())
    table.caption = (
        f"{sent:,} packets sent in {sim.seconds:.1f} s = {sent / max(sim.seconds, 1e-9):,.0f}/s, "
        f"acquisition latency (received → durable) p50 {_ms(head.latency_p50)}, "
        f"p99 {_ms(head.latency_p99)}; resent after RETRY {sim.resent}, "
        f"connection errors {sim.connection_errors}; revoked meter {result.revoked_meter}"
    )
    console.print(table)
    injected = ", ".join(f"{k} {v:,}" for k, v in sorted(sim.sent.items()))
    console.print(f"[dim]faults injected by the meters: {injected}[/dim]")
    console.print(regional_table(result.regional))


def regional_table(rows: list[RegionalLoad]) -> Table:
    """Per region: readings, energy and the peak hour, from anonymized measurements only."""
    energy: dict[str, int] = defaultdict(int)
    readings: dict[str, int] = defaultdict(int)
    peak: dict[str, tuple[int, int]] = {}
    for row in rows:
        energy[row.region_id] += row.energy_wh
        readings[row.region_id] += row.readings
        if row.energy_wh > peak.get(row.region_id, (0, -1))[1]:
            peak[row.region_id] = (row.bucket_start, row.energy_wh)
    table = Table(title="the utility's view: regional load (no meter ids, no customer ids)")
    for column in ("region", "readings", "energy kWh", "peak hour (UTC)", "peak kW"):
        table.add_column(column, justify="left" if column == "region" else "right")
    for region in sorted(energy):
        start, wh = peak[region]
        table.add_row(
            region,
            f"{readings[region]:,}",
            f"{energy[region] / 1000:,.1f}",
            dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d %H:%M"),
            f"{wh / 1000:,.1f}",  # one hour's Wh is the mean kW of that hour
        )
    return table
