"""`meterseal demo`: the whole journey of a reading in one process, on SQLite.

A deployment and a mixed fleet are created in a scratch directory, the fleet's consumption
(BDEW profiles) is sealed with faults injected, sent over TCP to a head-end running the
trusted stages, and stored. The summary shows what was accepted, what was refused and why,
throughput, acquisition latency and the utility's anonymized regional view. Then every
customer is billed, every bill audited and countersigned by the metrology authority, and one
stored reading is tampered with to show the audit naming it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from meterseal.acquisition.headend import HeadEnd, HeadEndReport, HeadEndSettings
from meterseal.acquisition.tcp import TcpLink
from meterseal.billing.auditor import Auditor
from meterseal.billing.completeness import Period
from meterseal.billing.policy import BillRefused, EstimationPolicy
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto.suites import ED25519, P256, PAPER, PQ, CipherSuite
from meterseal.deployment import Deployment, TrustedMaterial, init_deployment
from meterseal.meter.faults import FaultPlan
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.storage import RegionalLoad, Store
from meterseal.storage.bill_store import BillStore
from meterseal.storage.schema import signed_originals
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
    billing: BillingSummary | None = None


@dataclass
class BillingSummary:
    """Bills made and audited at the end of the demo, and the tamper the audit caught."""

    bills: int
    total: Decimal
    currency: str
    estimated_slots: int
    countersigned: int
    bill_ms_p50: float
    audit_ms_p50: float
    tampered: str
    caught: list[str]
    refused: list[str] = field(default_factory=list)  # customers billing refused
    flagged: int = 0  # bills over the estimated-share limit, billed and flagged as such


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
    console: Console, *, meters: int = 120, days: int = 2, faults: float = 0.02, seed: int = 7,
    then: Callable[[Deployment, str], None] | None = None,
) -> DemoResult:  # fmt: skip
    """Run the journey and print its summary; returns what was measured. `then` runs after
    the summary with the deployment and store URL, before the demo's files are removed."""
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
            # An ephemeral port: the demo runs beside a head-end serving on the default ones.
            settings = HeadEndSettings(tcp="127.0.0.1:0")
            headend = HeadEnd(TrustedMaterial.of(deployment), store, settings)
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
            period = Period(start, start + days * 86_400)
            result.billing = bill_and_audit(
                console, deployment, store, period, f"{tmp}/meterseal.db"
            )
        finally:
            store.close()
        print_summary(console, result)
        if then is not None:
            then(deployment, f"sqlite:///{tmp}/meterseal.db")
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
    if result.billing is not None:
        print_billing(console, result.billing)


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


def bill_and_audit(
    console: Console, deployment: Deployment, store: Store, period: Period, path: str
) -> BillingSummary:
    """Bill every customer, audit every bill, then tamper with one reading and audit again."""
    bills = BillStore(store)
    tariff = builtin_tariffs().latest("example-tou")
    bills.add_tariff(tariff, now=dt.datetime.now(dt.UTC))
    # The demo injects faults on purpose: bills over the estimated limit are billed and carry
    # the flag; a customer left without readings (its meter revoked) is refused.
    service = BillingService(
        bills, deployment.billing_key, policy=EstimationPolicy(allow_estimated=True)
    )
    customers = bills.customers()
    in_force = service.in_force_bills(period)  # one query for the run, not one per customer
    made = []
    refused = []
    with progress_bar(console) as bar:
        task = bar.add_task(
            "billing: query → compute → check → sign → record", total=len(customers)
        )
        for customer, meter_ids in sorted(customers.items()):
            try:
                made.append(
                    service.bill_customer(customer, meter_ids, period, tariff, in_force=in_force)
                )
            except BillRefused as exc:
                refused.append(exc.diagnostics())
            bar.advance(task)
    with Store.open_read_only(f"sqlite:///{path}") as source:
        auditor = Auditor(
            BillStore(source),
            bills,
            deployment.metrology_key,
            deployment.ca_cert,
            deployment.billing_key.public_key(),
        )
        audits = []
        with progress_bar(console) as bar:
            task = bar.add_task("metrology authority: re-verify and countersign", total=len(made))
            for done in made:
                audits.append(auditor.audit(done.bill.bill_id))
                bar.advance(task)
        victim = max(made, key=lambda d: d.bill.packets).bill
        meter_id = victim.meters[0].meter_id
        with store.transaction() as connection:
            counter = connection.scalar(
                sa.select(signed_originals.c.counter)
                .where(signed_originals.c.meter_id == meter_id)
                .order_by(signed_originals.c.counter)
                .limit(1)
            )
            connection.execute(
                signed_originals.update()
                .where(
                    signed_originals.c.meter_id == meter_id, signed_originals.c.counter == counter
                )
                .values(energy_wh=signed_originals.c.energy_wh + 500)
            )
        caught = auditor.audit(victim.bill_id).report.findings
    return BillingSummary(
        len(made),
        sum((d.bill.charges.total for d in made), Decimal(0)),
        tariff.currency,
        sum(m.expected - m.received for d in made for m in d.bill.meters),
        sum(a.countersigned is not None for a in audits),
        statistics.median(d.total_seconds for d in made) * 1000,
        statistics.median(a.seconds for a in audits) * 1000,
        f"{meter_id} counter {counter}: +500 Wh in the store after billing",
        [
            f"{f.kind.value} {f.meter_id or ''} {f.counter or ''} {f.field or ''}: {f.detail}"
            for f in caught
        ],
        refused,
        sum(d.bill.estimated_over_limit is not None for d in made),
    )


def print_billing(console: Console, b: BillingSummary) -> None:
    """Bills, audit verdicts and the caught tamper."""
    table = Table(title="billing and the metrology authority's audit")
    table.add_column("what")
    table.add_column("result", justify="right")
    table.add_row("bills signed and appended to the bill log", f"{b.bills:,}")
    table.add_row("total billed (tariff example-tou)", f"{b.total:,} {b.currency}")
    table.add_row("missing intervals, named and estimated on the bills", f"{b.estimated_slots:,}")
    table.add_row("bills over the estimated-share limit, flagged on the bill", f"{b.flagged:,}")
    table.add_row("customers refused (no readings)", f"{len(b.refused):,}")
    table.add_row("bills countersigned by the authority", f"{b.countersigned:,} of {b.bills:,}")
    table.add_row("one bill: query → recorded (p50)", f"{b.bill_ms_p50:.1f} ms")
    table.add_row("one audit, every signature re-verified (p50)", f"{b.audit_ms_p50:.1f} ms")
    console.print(table)
    for line in b.refused:
        console.print(f"  refused {escape(line)}")
    console.print(f"[bold]tamper:[/bold] {b.tampered}")
    for line in b.caught:
        console.print(f"  audit finds [yellow]{line}[/yellow]")
