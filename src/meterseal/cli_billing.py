"""Billing commands: `tariffs`, `bill`, `audit`, `export-bill` and `verify-bill`.

They sit with the command line, not in billing: they open the store a URL names and hand its
repositories (`storage.bill_store.BillStore`, which implements `billing.ports`) to the billing
service and the auditor, and billing imports nothing from storage.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.table import Table

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
    passphrase,
    shown,
)
from meterseal.errors import ConfigurationError, MetersealError
from meterseal.ui import milliseconds, progress_bar

if TYPE_CHECKING:
    from meterseal.billing.completeness import Period

billing_app = typer.Typer()
tariffs_app = typer.Typer(
    help="Versioned tariffs (data, never edited in place).", no_args_is_help=True
)
billing_app.add_typer(tariffs_app, name="tariffs")

FirstDay = Annotated[str, typer.Option("--from", help="first day of the period (UTC, YYYY-MM-DD)")]
Days = Annotated[int, typer.Option(help="days in the period (30 days = 2,880 readings)")]


def _period(first_day: str, days: int) -> Period:
    from meterseal.billing.completeness import Period

    try:
        return Period.days(dt.date.fromisoformat(first_day), days)
    except ValueError as exc:
        raise typer.BadParameter(f"--from: {exc}") from exc


def _public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A P-256 public key (billing or authority) from a PEM file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read public key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"{path} is not a P-256 public key")
    return key


@tariffs_app.command("add")
def tariffs_add(files: list[Path], store: StoreUrl = DEFAULT_STORE) -> None:
    """Publish tariff files (TOML, see docs/tariffs.md); a changed version is refused."""
    from meterseal.billing.tariff import load_tariff
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    with Store.open(store) as db:
        for path in files:
            tariff = load_tariff(path)
            added = BillStore(db).add_tariff(tariff, now=dt.datetime.now(dt.UTC))
            state = "published" if added else "already published"
            console.print(
                f"{tariff.tariff_id} v{tariff.version}: {state} "
                f"(digest {tariff.digest().hex()[:16]}…)"
            )


@tariffs_app.command("list")
def tariffs_list(store: StoreUrl = DEFAULT_STORE) -> None:
    """The published tariffs with their digests."""
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    table = Table("tariff", "version", "kind", "currency", "digest")
    with Store.open(store) as db:
        for t in BillStore(db).tariff_book():
            table.add_row(t.tariff_id, str(t.version), t.kind, t.currency, t.digest().hex()[:16])
    console.print(table)


@billing_app.command("bill")
def bill(
    tariff: Annotated[str, typer.Option(help="tariff id, optionally @version (default latest)")],
    first_day: FirstDay,
    days: Days = 30,
    customer: Annotated[list[str] | None, typer.Option(help="bill only these customers")] = None,
    estimation: Annotated[str, typer.Option(help="linear, zero or previous-day")] = "linear",
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Bill every customer (or those named) for a period: sign, record, append to the log."""
    from meterseal.billing.completeness import estimation_rule
    from meterseal.billing.service import BillingService
    from meterseal.cli_common import load
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    deployment = load(deployment_dir, passphrase_env)
    period = _period(first_day, days)
    tariff_id, _, version = tariff.partition("@")
    table = Table("customer", "meters", "readings", "estimated", "kWh", "total", "time")
    try:
        with Store.open(store) as db:
            bills = BillStore(db)
            book = bills.tariff_book()
            chosen = book.get(tariff_id, int(version)) if version else book.latest(tariff_id)
            service = BillingService(
                bills, deployment.billing_key, estimation=estimation_rule(estimation)
            )
            customers = bills.customers()
            wanted = sorted(customer or customers)
            with progress_bar(console) as bar:
                task = bar.add_task(f"billing {len(wanted)} customers", total=len(wanted))
                for name in wanted:
                    if name not in customers:
                        raise ConfigurationError(f"no customer {name!r} in the store")
                    done = service.bill_customer(name, customers[name], period, chosen)
                    b = done.bill
                    table.add_row(
                        name,
                        str(len(b.meters)),
                        f"{sum(m.received for m in b.meters)}/{sum(m.expected for m in b.meters)}",
                        f"{b.estimated_wh / 1000:.1f} kWh",
                        f"{b.energy_wh / 1000:.1f}",
                        f"{b.charges.total} {b.charges.currency}",
                        milliseconds(done.total_seconds),
                    )
                    bar.advance(task)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(table)
    console.print(f"bills signed and appended to the bill log in {shown(store)}")


@billing_app.command("audit")
def audit(
    bill_id: Annotated[list[str] | None, typer.Option("--bill", help="audit these bills")] = None,
    key: Annotated[Path | None, typer.Option(help="the authority's private key (PEM)")] = None,
    ca: Annotated[Path | None, typer.Option(help="the meter CA certificate (PEM)")] = None,
    billing_key: Annotated[Path | None, typer.Option(help="the billing public key (PEM)")] = None,
    reports: Annotated[
        str | None, typer.Option(help="database for reports (default: --store)")
    ] = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """The metrology authority's audit: read-only store, own key; countersign or report.

    Key files default to the deployment's metrology.key.pem, ca.cert.pem and billing.pub.pem.
    Exits 1 if any bill has a discrepancy.
    """
    from cryptography import x509

    from meterseal.billing.auditor import Auditor
    from meterseal.crypto.keys import read_private_key
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    key = key or deployment_dir / "metrology.key.pem"
    ca = ca or deployment_dir / "ca.cert.pem"
    billing_key = billing_key or deployment_dir / "billing.pub.pem"
    table = Table("bill", "verdict", "packets", "signatures", "findings", "time")
    found: Counter[str] = Counter()
    try:
        authority = read_private_key(key, passphrase(passphrase_env))
        if not isinstance(authority, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{key} is not the authority's P-256 key")
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
        with Store.open_read_only(store) as source, Store.open(reports or store) as out:
            auditor = Auditor(
                BillStore(source), BillStore(out), authority, ca_cert, _public_key(billing_key)
            )
            wanted = bill_id or [b.bill_id for b in BillStore(source).bills()]
            with progress_bar(console) as bar:
                task = bar.add_task(f"auditing {len(wanted)} bills", total=len(wanted))
                for name in wanted:
                    outcome = auditor.audit(name)
                    r = outcome.report
                    found.update(f.kind.value for f in r.findings)
                    verdict = (
                        "[green]countersigned[/green]" if r.clean else "[red]discrepancies[/red]"
                    )
                    table.add_row(
                        name,
                        verdict,
                        str(r.packets_checked),
                        str(r.signatures_verified),
                        str(len(r.findings)),
                        milliseconds(outcome.seconds),
                    )
                    for f in r.findings:
                        where = f.field or f"{f.meter_id} #{f.counter}"
                        console.print(
                            f"  {name}: [yellow]{f.kind.value}[/yellow] {where}: {f.detail}"
                        )
                    bar.advance(task)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from exc
    console.print(table)
    if found:
        console.print("findings: " + ", ".join(f"{n} {k}" for k, n in found.most_common()))
        raise typer.Exit(code=1)


@billing_app.command("export-bill")
def export_bill(
    bill_id: str,
    out: Annotated[Path, typer.Option(help="directory to write the files into")] = Path("."),
    reading: Annotated[
        list[str] | None, typer.Option(help="METER:COUNTER proofs to export")
    ] = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Write a bill (countersigned if audited clean) and reading proofs for `verify-bill`."""
    from meterseal.billing.ports import countersigned_of
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    keys = [_reading_key(item) for item in reading or []]
    with Store.open_read_only(store) as db:
        bills = BillStore(db)
        stored = bills.bill(bill_id)
        if stored is None:
            raise ConfigurationError(f"no bill {bill_id!r} in {shown(store)}")
        clean = countersigned_of(bills.reports(bill_id))
        out.mkdir(parents=True, exist_ok=True)
        stem = bill_id.replace("/", "_")
        (out / f"{stem}.bill.cose").write_bytes(clean or stored.signed_bill)
        console.print(f"{out / f'{stem}.bill.cose'}" + ("" if clean else " (not yet audited)"))
        for meter_id, counter in keys:
            proof = bills.reading_proof(bill_id, meter_id, counter)
            path = out / f"{stem}.{meter_id}.{counter}.proof.cbor"
            path.write_bytes(proof.to_cbor())
            console.print(str(path))


def _reading_key(item: str) -> tuple[str, int]:
    """(meter, counter) from an --reading METER:COUNTER option."""
    meter_id, _, counter = item.rpartition(":")
    try:
        return meter_id, int(counter)
    except ValueError:
        raise typer.BadParameter(f"--reading is METER:COUNTER, not {item!r}") from None


@billing_app.command("verify-bill")
def verify_bill(
    bill_file: Annotated[Path, typer.Argument(metavar="BILL")],
    reading: Annotated[Path, typer.Option(help="a reading proof file (export-bill --reading)")],
    ca: Annotated[Path, typer.Option(help="the meter CA certificate (PEM)")] = DEFAULT_DEPLOYMENT
    / "ca.cert.pem",
    billing_key: Annotated[Path, typer.Option(help="billing public key (PEM)")] = DEFAULT_DEPLOYMENT
    / "billing.pub.pem",
    authority_key: Annotated[
        Path, typer.Option(help="the authority's public key (PEM)")
    ] = DEFAULT_DEPLOYMENT / "metrology.pub.pem",
) -> None:
    """Check a reading's inclusion proof and the bill's two signatures with public material only."""
    from cryptography import x509

    from meterseal.billing.proofs import ReadingProof, verify_reading
    from meterseal.crypto.keys import kid_of, public_bytes

    started = time.perf_counter()
    try:
        authority = _public_key(authority_key)
        checked = verify_reading(
            bill_file.read_bytes(),
            ReadingProof.from_cbor(reading.read_bytes()),
            ca_certificate=x509.load_pem_x509_certificate(ca.read_bytes()),
            billing_key=_public_key(billing_key),
            authority_key=authority,
            authority_kid=kid_of(public_bytes(authority)),
        )
    except (MetersealError, OSError, ValueError) as exc:
        why = exc.diagnostics() if isinstance(exc, MetersealError) else str(exc)
        console.print(f"[red]NOT VERIFIED[/red]: {why}")
        raise typer.Exit(code=1) from exc
    r, b = checked.reading, checked.bill
    when = dt.datetime.fromtimestamp(r.timestamp, dt.UTC)
    console.print(f"[green]verified[/green] in {milliseconds(time.perf_counter() - started)}")
    console.print(
        f"  bill {b.bill_id}: {b.charges.total} {b.charges.currency}, signed by the billing "
        "service, countersigned by the metrology authority"
    )
    console.print(
        f"  reading: meter {r.meter_id} counter {r.counter} at {when:%Y-%m-%d %H:%M} UTC, "
        f"{r.energy_wh} Wh, meter signature valid"
    )
    console.print(
        f"  included as packet {checked.index + 1} of {b.packets} "
        f"(Merkle root {b.merkle_root.hex()[:16]}…)"
    )
