"""`meterseal bench billing`: the SGX billing paper's aggregation experiment (section 3.2).

The paper times a customer's month of 2,880 signed packets "from the moment the query begins
the database until the amount of data is calculated, checked, signed and recorded". Here that
is one `BillingService.bill_customer`, whose phases (query, compute, check, sign, record) it
times itself. For each store:
  * the signed months of 1 + sum(--customers) meters, one meter per customer, are loaded
    from the signed cache and the store is settled as after a month of ingest (`billing_data`);
  * one warm-up bill, not counted, compiles the statements and fills the caches; then the
    setup's objects are frozen out of the garbage collector's reach (`gc.freeze`);
  * each --customers round bills that many customers no earlier round billed, one after the
    other in this process (bills are never rewritten, so every bill is a new one);
  * then --audits of the round's bills, spread over it, are audited (`Auditor.audit`, timed
    whole: reading the store, re-verifying every meter signature, recomputing, countersigning
    and writing the report). Before each, the bare verification: the suite's `verify` in a
    tight loop over the same packets' signatures and Sig_structures, prepared beforehand.
Targets: a bill's p50 ≤ 20 ms; the audit's p50 ≤ 1.3 x the bare verification's p50.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import math
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console

from meterseal.bench.billing_data import SignedFleet, load_fleet, settle, signed_fleet
from meterseal.bench.ingest import scratch_store
from meterseal.bench.timing import Machine
from meterseal.billing import hashing
from meterseal.billing.auditor import Auditor
from meterseal.billing.compute import BillPacket
from meterseal.billing.service import PHASES, BillingService
from meterseal.billing.tariff import Tariff, builtin_tariffs
from meterseal.crypto import cose, fixed
from meterseal.crypto.registry import MeterDirectory
from meterseal.crypto.suites import CipherSuite
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.ui import TextTable, Verdict, pass_fail, progress_bar

CUSTOMERS = (1, 100, 10_000)
STORES = ("sqlite", "postgres")
TARIFF = "example-tou"
BILL_TARGET = 0.020  # seconds, p50 of one 2,880-packet bill
AUDIT_TARGET = 1.3  # audit p50 / bare verification p50


@dataclass(frozen=True)
class AuditSample:
    """One audited bill: the whole audit's seconds, the bare verification's, the verdict."""

    bill_id: str
    audit_seconds: float
    bare_seconds: float
    signatures: int
    findings: int


@dataclass(frozen=True)
class BillRound:
    """One round: that many fresh customers billed one after the other, some bills audited."""

    store: str
    customers: int
    packets: int  # per bill
    phases: tuple[Mapping[str, float], ...]  # per bill, seconds of each phase
    wall_seconds: float
    audits: tuple[AuditSample, ...]

    @property
    def totals(self) -> list[float]:
        """Seconds of each bill from the query's start until recorded."""
        return [sum(p.values()) for p in self.phases]

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the per-bill seconds (q in 0..100)."""
        ordered = sorted(self.totals)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    def phase_mean(self, phase: str) -> float:
        """Mean seconds of one phase."""
        return statistics.fmean(p[phase] for p in self.phases)

    @property
    def per_second(self) -> float:
        """Bills per second over the round's wall time (one process)."""
        return len(self.phases) / self.wall_seconds

    @property
    def audit_p50(self) -> float:
        """Median seconds of a whole audit."""
        return statistics.median(a.audit_seconds for a in self.audits)

    @property
    def bare_p50(self) -> float:
        """Median seconds of the bare verification of the same bills' signatures."""
        return statistics.median(a.bare_seconds for a in self.audits)

    @property
    def ratio(self) -> float:
        """Audit p50 / bare verification p50."""
        return self.audit_p50 / self.bare_p50

    @property
    def bill_met(self) -> bool:
        """Median bill within BILL_TARGET."""
        return self.percentile(50) <= BILL_TARGET

    @property
    def audit_met(self) -> bool:
        """Median audit within AUDIT_TARGET x the bare verification."""
        return self.ratio <= AUDIT_TARGET

    @property
    def findings(self) -> int:
        """Findings over all audits of the round (anything but 0 is an error)."""
        return sum(a.findings for a in self.audits)


@dataclass(frozen=True)
class StoreRun:
    """One store: how its data was loaded, the uncounted warm-up bill, and its rounds."""

    store: str
    rows: int
    load_seconds: float
    settle_seconds: float
    warmup_seconds: float
    rounds: tuple[BillRound, ...]


@dataclass(frozen=True)
class BillingBench:
    """The whole run."""

    suite: str
    intervals: int
    meters: int
    sign_seconds: float | None  # None: the cache did not record it
    cached: bool  # the signed months came from an earlier run's cache
    runs: tuple[StoreRun, ...]
    machine: Machine

    @property
    def rounds(self) -> list[BillRound]:
        """Every round of every store."""
        return [r for run in self.runs for r in run.rounds]

    @property
    def findings(self) -> int:
        """Findings over every audit."""
        return sum(r.findings for r in self.rounds)


@contextlib.contextmanager
def _cache_directory(cache: Path | None) -> Iterator[Path]:
    if cache is not None:
        yield cache
        return
    with tempfile.TemporaryDirectory(prefix="meterseal-billing-") as tmp:
        yield Path(tmp)


def run_billing(
    console: Console,
    suite: CipherSuite,
    *,
    customers: Sequence[int] = CUSTOMERS,
    stores: Sequence[str] = STORES,
    audits: int = 10,
    intervals: int = 2880,
    cache: Path | None = None,
    workers: int | None = None,
) -> BillingBench:
    """Sign (or read) the months, then bill and audit each round on each store."""
    if any(n <= 0 for n in customers) or audits < 1:
        raise ValueError("every round bills at least one customer, and at least one is audited")
    if unknown := sorted(set(stores) - set(STORES)):
        raise ValueError(f"stores are {' and '.join(STORES)}, not {', '.join(unknown)}")
    needed = 1 + sum(customers)  # the warm-up bill's customer, then each round's
    with _cache_directory(cache) as directory:
        with progress_bar(console) as bar:
            task = bar.add_task(
                f"meters sign {needed:,} months of {intervals:,} readings", total=needed
            )
            fleet = signed_fleet(
                directory,
                suite,
                needed,
                intervals,
                progress=lambda n: bar.advance(task, n),
                workers=workers,
            )
        if fleet.cached:
            console.print(f"signed months read from the cache in {directory}")
        runs = tuple(run_store(console, kind, fleet, customers, audits) for kind in stores)
    return BillingBench(
        suite.name, intervals, needed, fleet.sign_seconds, fleet.cached, runs, Machine.probe(None)
    )


def run_store(
    console: Console, kind: str, fleet: SignedFleet, customers: Sequence[int], audits: int
) -> StoreRun:
    """Load the fleet's months into a scratch store of `kind`, then bill and audit each round."""
    billing_key = ec.generate_private_key(ec.SECP256R1())
    authority_key = ec.generate_private_key(ec.SECP256R1())
    with scratch_store(kind) as url, Store.open(url) as store:
        with progress_bar(console) as bar:
            task = bar.add_task(
                f"{kind}: load {len(fleet.meters):,} signed months", total=len(fleet.meters)
            )
            started = time.perf_counter()
            rows = load_fleet(store, fleet, progress=lambda n: bar.advance(task, n))
            load_seconds = time.perf_counter() - started
        with console.status(f"{kind}: settle the store after the bulk load"):
            started = time.perf_counter()
            settle(store)
            settle_seconds = time.perf_counter() - started
        bills = BillStore(store)
        tariff = builtin_tariffs().latest(TARIFF)
        bills.add_tariff(tariff, now=dt.datetime.now(dt.UTC))
        service = BillingService(bills, billing_key)
        with Store.open_read_only(url) as source:
            auditor = Auditor(
                BillStore(source),
                bills,
                authority_key,
                fleet.ca_certificate,
                billing_key.public_key(),
            )
            queue = fleet.customers()
            customer, meter_id = queue[0]
            warmup = service.bill_customer(customer, [meter_id], fleet.period, tariff)
            # The setup's objects (the fleet, the auditor's registry of every meter, caches)
            # would otherwise be walked by every full collection that the bills' garbage
            # triggers: ~40 ms each, every few bills. A billing service freezes after startup.
            gc.collect()
            gc.freeze()
            try:
                rounds, offset = [], 1
                for count in customers:
                    chosen = queue[offset : offset + count]
                    offset += count
                    bench = _RoundBench(console, kind, service, auditor, fleet, tariff)
                    rounds.append(bench.run(chosen, audits))
            finally:
                gc.unfreeze()
    return StoreRun(kind, rows, load_seconds, settle_seconds, warmup.total_seconds, tuple(rounds))


@dataclass
class _RoundBench:
    console: Console
    kind: str
    service: BillingService
    auditor: Auditor
    fleet: SignedFleet
    tariff: Tariff

    def run(self, chosen: Sequence[tuple[str, str]], audits: int) -> BillRound:
        phases: list[Mapping[str, float]] = []
        billed: list[tuple[str, str]] = []  # bill id, meter id
        period = self.fleet.period
        # One overlap query for the round, as `meterseal bill` makes one for its run.
        in_force = self.service.in_force_bills(period, [customer for customer, _ in chosen])
        with progress_bar(self.console) as bar:
            task = bar.add_task(f"{self.kind}: bill {len(chosen):,} customers", total=len(chosen))
            started = time.perf_counter()
            for customer, meter_id in chosen:
                bill = self.service.bill_customer(
                    customer, [meter_id], period, self.tariff, in_force=in_force
                )
                if bill.bill.packets != self.fleet.intervals:
                    raise RuntimeError(f"{bill.bill.bill_id}: {bill.bill.packets} packets billed")
                phases.append(bill.seconds)
                billed.append((bill.bill.bill_id, meter_id))
                bar.advance(task)
            wall = time.perf_counter() - started
        picked = [billed[i] for i in spread(len(billed), audits)]
        with self.console.status(f"{self.kind}: audit {len(picked)} of the bills"):
            samples = tuple(self._audit(bill_id, meter_id) for bill_id, meter_id in picked)
        return BillRound(self.kind, len(chosen), self.fleet.intervals, tuple(phases), wall, samples)

    def _audit(self, bill_id: str, meter_id: str) -> AuditSample:
        period = self.fleet.period
        rows = self.auditor.source.packets([meter_id], period.start, period.end)
        bare = bare_verification(rows, self.auditor.registry, self.fleet.suite)
        started = time.perf_counter()
        outcome = self.auditor.audit(bill_id)
        seconds = time.perf_counter() - started
        report = outcome.report
        return AuditSample(bill_id, seconds, bare, report.signatures_verified, len(report.findings))


def spread(count: int, picks: int) -> list[int]:
    """Up to `picks` indices spread evenly over range(count), first and last included."""
    picks = min(picks, count)
    if picks <= 1:
        return [0] if picks == 1 else []
    return sorted({i * (count - 1) // (picks - 1) for i in range(picks)})


def bare_verification(
    rows: Sequence[BillPacket], registry: MeterDirectory, suite: CipherSuite
) -> float:
    """Seconds of `suite.signature.verify` alone over the rows' signatures, in a tight loop."""
    items = []
    for row in rows:
        signed = cose.parse_sign1(row.signed_original)
        record = registry.get(row.meter_id)
        if record is None:
            raise RuntimeError(f"meter {row.meter_id} is not in the auditor's registry")
        items.append((record.public_key, signed.signature, signed.to_be_signed()))
    verify = suite.signature.verify
    started = time.perf_counter()
    for key, signature, data in items:
        verify(key, signature, data)
    return time.perf_counter() - started


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def bill_table(bench: BillingBench) -> TextTable:
    """Per store and round: per-bill time (query → recorded), mean phases, bills/s, target."""
    rows = [
        (
            r.store,
            f"{r.customers:,}",
            f"{len(r.phases):,}",
            f"{r.packets:,}",
            _ms(r.percentile(50)),
            _ms(r.percentile(99)),
            _ms(max(r.totals)),
            *(_ms(r.phase_mean(p)) for p in PHASES),
            f"{r.per_second:,.1f}",
            pass_fail(r.bill_met),
        )
        for r in bench.rounds
    ]
    return TextTable(
        f"Billing: one customer's month, query → computed, checked, signed, recorded "
        f"(ms per bill; target p50 ≤ {BILL_TARGET * 1e3:.0f} ms)",
        (
            "store",
            "customers",
            "bills",
            "packets/bill",
            "p50",
            "p99",
            "max",
            *(f"{p} (mean)" for p in PHASES),
            "bills/s",
            f"p50 ≤ {BILL_TARGET * 1e3:.0f} ms",
        ),
        rows,
        _notes(bench),
        Verdict(
            f"p50 ≤ {BILL_TARGET * 1e3:.0f} ms per bill in every round",
            all(r.bill_met for r in bench.rounds),
        ),
    )


def audit_table(bench: BillingBench) -> TextTable:
    """Per store and round: the whole audit against the bare signature verification."""
    rows = [
        (
            r.store,
            f"{r.customers:,}",
            f"{len(r.audits)}",
            f"{min(a.signatures for a in r.audits):,}",
            _ms(r.audit_p50),
            _ms(r.bare_p50),
            f"{r.ratio:.2f}x",
            pass_fail(r.audit_met),
            f"{sum(a.findings == 0 for a in r.audits)}/{len(r.audits)} clean",
        )
        for r in bench.rounds
    ]
    return TextTable(
        f"Audit: re-verify every signature, recompute, countersign (ms per bill; "
        f"target ≤ {AUDIT_TARGET}x the bare verification)",
        (
            "store",
            "customers",
            "audits",
            "signatures/bill",
            "audit p50",
            "bare verify p50",
            "audit/bare",
            f"≤ {AUDIT_TARGET}x",
            "verdicts",
        ),
        rows,
        (
            "audit: `Auditor.audit` timed whole, the report's write included; bare: "
            f"`{bench.suite}` signature verify in a tight loop over the same packets, "
            "Sig_structures and keys prepared beforehand, same process, just before the audit",
        ),
        Verdict(
            f"audit p50 ≤ {AUDIT_TARGET}x the bare verification in every round",
            all(r.audit_met for r in bench.rounds),
        ),
    )


def _notes(bench: BillingBench) -> tuple[str, ...]:
    m = bench.machine
    took = "" if bench.sign_seconds is None else f" in {bench.sign_seconds:,.0f} s on {m.cpus} CPUs"
    signed = f"signed{took}" + (" by an earlier run (cached)" if bench.cached else "")
    loads = "; ".join(
        f"{run.store}: {run.rows:,} rows loaded in {run.load_seconds:,.0f} s, settled in "
        f"{run.settle_seconds:,.0f} s, warm-up bill {_ms(run.warmup_seconds)} ms (not counted)"
        for run in bench.runs
    )
    return (
        f"{m.cpu}, {m.cpus} CPUs, {m.python}, load {m.load[0]:.2f}; suite {bench.suite}, "
        f"tariff {TARIFF}, one meter per customer",
        f"{bench.meters:,} meters x {bench.intervals:,} readings {signed}; {loads}",
        "each round bills customers no earlier round billed; phases are means, p50/p99/max "
        "are of the whole bill",
        f"bill hashing and manifest: {hashing.IMPLEMENTATION}; signed-original "
        f"reader: {fixed.IMPLEMENTATION} (C: the optional extensions; Python: not built, or "
        "switched off by MS_PURE_PYTHON_HASHES / MS_PURE_PYTHON_READER)",
    )
