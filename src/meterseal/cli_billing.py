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

from meterseal.cli_billing_parts import (
    SHOWN_BILLS,
    AllowEstimated,
    BillingKeyFile,
    IdRows,
    MaxEstimated,
    MeterCaFile,
    bill_ledger,
    estimation_policy,
)
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
from meterseal.exchange.cli_scope import meter_windows, unsigned_of
from meterseal.ui import milliseconds, progress_bar

if TYPE_CHECKING:
    from meterseal.billing.completeness import Period
    from meterseal.billing.policy import BillRefused
    from meterseal.storage.bill_store import BillStore

billing_app = typer.Typer()
tariffs_app = typer.Typer(
    help="Versioned tariffs (data, never edited in place).", no_args_is_help=True
)
billing_app.add_typer(tariffs_app, name="tariffs")

FirstDay = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="first day of the period (UTC, YYYY-MM-DD; default: the --days days before today)",
    ),
]
Days = Annotated[int, typer.Option(help="days in the period (30 days = 2,880 readings)")]


def period_option(first_day: str | None, days: int) -> Period:
    """The period the --from and --days options name; BadParameter if --from is no date.

    Without --from: the `days` whole days (UTC) before today, the period `simulate --days`
    sends by default.
    """
    from meterseal.billing.completeness import Period

    try:
        if first_day is None:
            return Period.days(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days), days)
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
    tariff: Annotated[
        str,
        typer.Option(
            help="tariff id, optionally @version (default: the version in force at the start)"
        ),
    ],
    first_day: FirstDay = None,
    days: Days = 30,
    customer: Annotated[list[str] | None, typer.Option(help="bill only these customers")] = None,
    estimation: Annotated[str, typer.Option(help="linear, zero or previous-day")] = "linear",
    max_estimated_percent: MaxEstimated = "10",
    allow_estimated: AllowEstimated = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be signed; sign and write nothing")
    ] = False,
    show: Annotated[int, typer.Option(help="bills (and refusals) to list one by one")] = (
        SHOWN_BILLS
    ),
    allow_unsigned: Annotated[
        bool,
        typer.Option(
            "--allow-unsigned", help="count UNSIGNED imported readings (the bill says how much)"
        ),
    ] = False,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Bill every customer (or those named) for a period: sign, record, append to the log.

    Refused, and named with the reason: a customer with no readings in the period, one whose
    estimated share exceeds --max-estimated-percent (unless --allow-estimated), one billed
    already, one with a bill in force overlapping the period (rebill corrects that bill).
    Exits 1 if every customer was refused.
    """
    from meterseal.billing.completeness import estimation_rule
    from meterseal.billing.policy import BillRefused, percent
    from meterseal.billing.service import BillingService
    from meterseal.cli_common import load
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore
    from meterseal.storage.imports import ImportStore

    policy = estimation_policy(max_estimated_percent, allow_estimated)
    deployment = load(deployment_dir, passphrase_env)
    period = period_option(first_day, days)
    tariff_id, _, version = tariff.partition("@")
    table = IdRows("bill", "readings", "estimated", "kWh", "total", "time", "flag")
    refused: list[BillRefused] = []
    billed = shown_rows = 0
    try:
        with Store.open(store) as db:
            bills = BillStore(db)
            book = bills.tariff_book()
            chosen = (
                book.get(tariff_id, int(version))
                if version
                else book.in_force(tariff_id, period.start)
            )
            service = BillingService(
                bills,
                deployment.billing_key,
                estimation=estimation_rule(estimation),
                policy=policy,
                allow_unsigned=allow_unsigned,
            )
            customers = ImportStore(db).customers_between(period.start, period.end)
            wanted = sorted(customer or customers)
            unknown = sorted(set(wanted) - set(customers))
            if unknown:
                raise ConfigurationError(f"no customer {unknown[0]!r} in the store")
            # One query for the run: its customers' bills in force overlapping the period.
            in_force = service.in_force_bills(period, wanted if customer else None)
            verb = "checking" if dry_run else "billing"
            with progress_bar(console) as bar:
                task = bar.add_task(f"{verb} {len(wanted)} customers", total=len(wanted))
                for name in wanted:
                    bar.advance(task)
                    seconds: dict[str, float] = {}
                    try:
                        meters = customers[name]
                        computed = service.compute(
                            name,
                            meters,
                            period,
                            chosen,
                            seconds,
                            meter_windows(meters, period),
                            look=dry_run,
                            in_force=in_force,
                        )
                        if not dry_run:
                            service.sign_and_record(computed, seconds)
                    except BillRefused as exc:
                        refused.append(exc)
                        continue
                    billed += 1
                    if shown_rows >= show:
                        continue
                    shown_rows += 1
                    b = computed.bill
                    table.add_row(
                        b.bill_id,
                        f"{sum(m.received for m in b.meters)}/{sum(m.expected for m in b.meters)}",
                        f"{percent(b)}%"
                        + (f", {b.unsigned_wh / 1000:.1f} kWh UNSIGNED" if b.unsigned_wh else ""),
                        f"{b.energy_wh / 1000:.1f}",
                        f"{b.charges.total} {b.charges.currency}",
                        milliseconds(sum(seconds.values())),
                        "" if b.estimated_over_limit is None else "over the estimated limit",
                    )
            unsigned = 0 if allow_unsigned else unsigned_of(db, refused, customers, period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if shown_rows:
        table.print()
    if billed > shown_rows:
        console.print(f"… and {billed - shown_rows} more (--show N lists more)")
    _print_refusals(refused, show)
    if unsigned:
        console.print(
            f"{unsigned} UNSIGNED imported readings of the refused customers' meters are in the "
            "period: --allow-unsigned counts them (and the bill says so)",
            soft_wrap=True,
        )
    done = "would be signed" if dry_run else "signed and appended to the bill log"
    console.print(
        f"{billed} bills {done}, {len(refused)} refused, "
        f"period {period.start}-{period.end}, store {shown(store)}",
        soft_wrap=True,
    )
    if allow_unsigned:
        console.print("UNSIGNED imported readings were allowed; each bill states their energy")
    if dry_run:
        console.print("dry run: nothing was signed or written", soft_wrap=True)
    elif billed:
        console.print(
            f"list their ids: meterseal bills list --from {first_day} --days {days}", soft_wrap=True
        )
    if refused and not billed:
        raise typer.Exit(code=1)


def _print_refusals(refused: list[BillRefused], show: int) -> None:
    """Each refusal with its reason, or, beyond `show`, one line per reason naming them all."""
    from meterseal.billing.policy import REFUSALS

    if len(refused) <= show:
        for no in refused:
            console.print(f"[red]refused[/red] {no.customer_id}: {no.reason}", soft_wrap=True)
        return
    kinds: dict[str, list[str]] = {}
    for no in refused:
        kinds.setdefault(no.kind, []).append(no.customer_id)
    for kind, names in kinds.items():
        console.print(
            f"[red]refused[/red] {len(names)}, {REFUSALS[kind]}: {', '.join(names)}",
            soft_wrap=True,
        )
    console.print(f"(--show {len(refused)} gives each refusal's own reason)", soft_wrap=True)


@billing_app.command("audit")
def audit(
    bill_id: Annotated[list[str] | None, typer.Option("--bill", help="audit these bills")] = None,
    key: Annotated[Path | None, typer.Option(help="the authority's private key (PEM)")] = None,
    ca: MeterCaFile = None,
    billing_key: BillingKeyFile = None,
    reports: Annotated[
        str | None, typer.Option(help="database for reports (default: --store)")
    ] = None,
    show: Annotated[int, typer.Option(help="clean bills to list (others always are)")] = (
        SHOWN_BILLS
    ),
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
    from_kvs: Annotated[
        str | None,
        typer.Option(
            "--from-kvs",
            help="read the signed originals from the KVS gateway at this URL "
            "(months written by meterseal kvs export)",
        ),
    ] = None,
    kvs_key_env: Annotated[
        str, typer.Option(help="environment variable holding the KVS API key (--from-kvs)")
    ] = "MS_KVS_KEY",
) -> None:
    """The metrology authority's audit: read-only store, own key; countersign or report.

    Key files default to the deployment's metrology.key.pem, ca.cert.pem and billing.pub.pem.
    Exits 1 if any bill has a discrepancy.
    """
    from cryptography import x509

    from meterseal.billing.auditor import Auditor
    from meterseal.cli_kvs_export import audit_source
    from meterseal.crypto.keys import read_private_key
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    key = key or deployment_dir / "metrology.key.pem"
    ca = ca or deployment_dir / "ca.cert.pem"
    billing_key = billing_key or deployment_dir / "billing.pub.pem"
    table = IdRows("bill", "verdict", "packets", "signatures", "findings", "time")
    found: Counter[str] = Counter()
    clean = 0
    try:
        authority = read_private_key(key, passphrase(passphrase_env))
        if not isinstance(authority, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{key} is not the authority's P-256 key")
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
        with (
            Store.open_read_only(store) as source,
            Store.open(reports or store) as out,
            audit_source(BillStore(source), from_kvs, kvs_key_env, deployment_dir) as readings,
        ):
            auditor = Auditor(
                readings, BillStore(out), authority, ca_cert, _public_key(billing_key)
            )
            standing = bill_ledger(BillStore(source))
            wanted = bill_id or list(standing)
            corrected: list[str] = []  # superseded or credited bills with findings
            with progress_bar(console) as bar:
                task = bar.add_task(f"auditing {len(wanted)} bills", total=len(wanted))
                for name in wanted:
                    outcome = auditor.audit(name)
                    r = outcome.report
                    entry = standing.get(name)
                    replaced = (
                        entry is not None and not entry.in_force and entry.bill.kind != "credit"
                    )
                    verdict = "countersigned" if r.clean else "discrepancies"
                    clean += r.clean
                    bar.advance(task)
                    if r.clean and clean > show:
                        continue  # bills with findings are always listed
                    if replaced and entry is not None and not r.clean:
                        verdict += " (corrected)"  # bills list shows by what; not counted below
                        corrected.append(name)
                    else:
                        found.update(f.kind.value for f in r.findings)
                    table.add_row(
                        name,
                        verdict,
                        str(r.packets_checked),
                        str(r.signatures_verified),
                        str(len(r.findings)),
                        milliseconds(outcome.seconds),
                    )
                    if name in corrected:  # listed when found; now one line, not each again
                        kinds = Counter(f.kind.value for f in r.findings).most_common()
                        said = ", ".join(f"{n} {k}" for k, n in kinds)
                        console.print(f"  {name}: {said} (corrected)", soft_wrap=True)
                        continue
                    for f in r.findings:
                        where = f.field or f"{f.meter_id} #{f.counter}"
                        console.print(
                            f"  {name}: [yellow]{f.kind.value}[/yellow] {where}: {f.detail}",
                            soft_wrap=True,
                        )
    except (OSError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from exc
    table.print()
    if clean > show:
        console.print(f"… and {clean - show} more countersigned (--show N lists more)")
    console.print(
        f"{clean} of {len(wanted)} bills countersigned; export one for its customer: "
        "meterseal export-bill BILL (ids: meterseal bills list)",
        soft_wrap=True,
    )
    if corrected:
        console.print(
            f"{len(corrected)} bills with discrepancies are corrected already (a credit cancels "
            "them, a rebill replaces them): not counted",
            soft_wrap=True,
        )
    if found:
        console.print("findings: " + ", ".join(f"{n} {k}" for k, n in found.most_common()))
        raise typer.Exit(code=1)


@billing_app.command("export-bill")
def export_bill(
    bill_id: Annotated[
        str | None, typer.Argument(metavar="[BILL]", help="bill id (meterseal bills list)")
    ] = None,
    customer: Annotated[
        str | None, typer.Option(help="instead of BILL: this customer's bill in force for --from")
    ] = None,
    first_day: Annotated[
        str | None, typer.Option("--from", help="with --customer: the period's first day")
    ] = None,
    days: Annotated[int, typer.Option(help="with --customer: days of the period")] = 30,
    out: Annotated[Path, typer.Option(help="directory to write the files into")] = Path("."),
    reading: Annotated[
        list[str] | None,
        typer.Option(help="METER:COUNTER proofs to export (default: the bill's first reading)"),
    ] = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Write a bill (countersigned if audited clean) and reading proofs for `verify-bill`."""
    from meterseal.billing.bill import manifest_from_cbor
    from meterseal.billing.ports import countersigned_of
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    keys = [_reading_key(item) for item in reading or []]
    with Store.open_read_only(store) as db:
        bills = BillStore(db)
        bill_id = bill_id or _bill_in_force(bills, customer, first_day, days)
        stored = bills.bill(bill_id)
        if stored is None:
            raise ConfigurationError(
                f"no bill {bill_id!r} in {shown(store)} (meterseal bills list shows the ids)"
            )
        if not keys:  # the customer checks one reading at least: the first billed one
            keys = [e[:2] for e in manifest_from_cbor(stored.manifest)[:1]]
        clean = countersigned_of(bills.reports(bill_id))
        out.mkdir(parents=True, exist_ok=True)
        stem = bill_id.replace("/", "_")
        bill_file = out / f"{stem}.bill.cose"
        bill_file.write_bytes(clean or stored.signed_bill)
        console.print(f"{bill_file}" + ("" if clean else " (not yet audited)"), soft_wrap=True)
        entry = bill_ledger(bills, stored.customer_id).get(bill_id)
        if entry is not None and not entry.in_force and entry.bill.kind != "credit":
            console.print(f"[yellow]not in force[/yellow]: {entry.standing}", soft_wrap=True)
        for meter_id, counter in keys:
            proof = bills.reading_proof(bill_id, meter_id, counter)
            path = out / f"{stem}.{meter_id}.{counter}.proof.cbor"
            path.write_bytes(proof.to_cbor())
            console.print(f"{path} (reading {meter_id}:{counter})", soft_wrap=True)
            console.print(
                f"check it: meterseal verify-bill {bill_file} --reading {path}", soft_wrap=True
            )


def _bill_in_force(bills: BillStore, customer: str | None, first_day: str | None, days: int) -> str:
    """The id of `customer`'s bill in force for the period; BadParameter without one."""
    if customer is None or first_day is None:
        raise typer.BadParameter("name a BILL, or a --customer and the period's --from")
    period = period_option(first_day, days)
    live = [e for e in bill_ledger(bills, customer, period).values() if e.in_force]
    if not live:
        raise ConfigurationError(
            f"customer {customer} has no bill in force for {first_day}+{days}d"
        )
    return live[-1].bill.bill_id


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
    reading: Annotated[
        Path | None,
        typer.Option(help="a reading proof file (export-bill --reading); without: the bill alone"),
    ] = None,
    ca: MeterCaFile = None,
    billing_key: BillingKeyFile = None,
    authority_key: Annotated[
        Path | None,
        typer.Option(help="the authority's public key (PEM; default: the deployment's)"),
    ] = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: Annotated[
        str | None, typer.Option(help="also say whether the bill is still in force (read-only)")
    ] = None,
) -> None:
    """Check the bill's two signatures (and a reading's inclusion proof) with public material only.

    Prints the bill's verification code, as its document (`bill-doc`) shows it.
    """
    from cryptography import x509

    from meterseal.billing.document import verification_code
    from meterseal.billing.policy import percent
    from meterseal.billing.proofs import (
        ReadingProof,
        VerifiedReading,
        verify_bill_signatures,
        verify_reading,
    )
    from meterseal.crypto.keys import kid_of, public_bytes

    # Keys not named are the deployment's (meterseal.toml's, in an operator's directory).
    ca = ca or deployment_dir / "ca.cert.pem"
    billing_key = billing_key or deployment_dir / "billing.pub.pem"
    authority_key = authority_key or deployment_dir / "metrology.pub.pem"
    started = time.perf_counter()
    checked: VerifiedReading | None = None
    try:
        authority = _public_key(authority_key)
        signed = bill_file.read_bytes()
        billing = _public_key(billing_key)
        kid = kid_of(public_bytes(authority))
        if reading is None:
            b = verify_bill_signatures(
                signed, billing_key=billing, authority_key=authority, authority_kid=kid
            )
        else:
            checked = verify_reading(
                signed,
                ReadingProof.from_cbor(reading.read_bytes()),
                ca_certificate=x509.load_pem_x509_certificate(ca.read_bytes()),
                billing_key=billing,
                authority_key=authority,
                authority_kid=kid,
            )
            b = checked.bill
    except (MetersealError, OSError, ValueError) as exc:
        why = exc.diagnostics() if isinstance(exc, MetersealError) else str(exc)
        console.print(f"[red]NOT VERIFIED[/red]: {why}")
        raise typer.Exit(code=1) from exc
    console.print(f"[green]verified[/green] in {milliseconds(time.perf_counter() - started)}")
    console.print(
        f"  bill {b.bill_id}: {b.charges.total} {b.charges.currency}, signed by the billing "
        "service, countersigned by the metrology authority",
        soft_wrap=True,
    )
    over = b.estimated_over_limit
    console.print(
        f"  estimated: {percent(b)}% of the period's slots"
        + ("" if over is None else f", OVER the {over}% limit: billed on the operator's allowance")
    )
    if b.refers is not None:
        what = "cancels" if b.kind == "credit" else "replaces"
        console.print(f"  {b.kind}: {what} bill {b.refers[0]}; reason: {b.reason}", soft_wrap=True)
    if store is not None:
        console.print(
            f"  in the bill log: {_standing(store, b.customer_id, b.bill_id)}", soft_wrap=True
        )
    console.print(f"  verification code {verification_code(signed)}")
    if checked is None:
        return
    r = checked.reading
    when = dt.datetime.fromtimestamp(r.timestamp, dt.UTC)
    console.print(
        f"  reading: meter {r.meter_id} counter {r.counter} at {when:%Y-%m-%d %H:%M} UTC, "
        f"{r.energy_wh} Wh, "
        + (
            "an UNSIGNED import: no meter signature (the meter's certificate is valid)"
            if checked.unsigned
            else "meter signature valid"
        ),
        soft_wrap=True,
    )
    if b.unsigned_wh is not None:
        console.print(f"  the bill counts {b.unsigned_wh} Wh of UNSIGNED imported readings")
    console.print(
        f"  included as packet {checked.index + 1} of {b.packets} "
        f"(Merkle root {b.merkle_root.hex()[:16]}…)"
    )


def _standing(store: str, customer: str, bill_id: str) -> str:
    """The bill's standing in a store's bill log: in force, superseded by …, not there."""
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    with Store.open_read_only(store) as db:
        entry = bill_ledger(BillStore(db), customer).get(bill_id)
    return "not in this store" if entry is None else entry.standing
