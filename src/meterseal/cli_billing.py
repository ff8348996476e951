"""Billing commands: `tariffs`, `bill`, `audit`, `export-bill` and `verify-bill`.

They sit with the command line, not in billing: they open the store a URL names and hand its
repositories (`storage.bill_store.BillStore`, which implements `billing.ports`) to the billing
service and the auditor, and billing imports nothing from storage.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from cryptography.hazmat.primitives.asymmetric import ec
from rich.table import Table

from meterseal.cli_bill_proofs import export_bill, verify_bill
from meterseal.cli_billing_parts import (
    SHOWN_BILLS,
    AllowEstimated,
    BillingKeyFile,
    IdRows,
    MaxEstimated,
    MeterCaFile,
    bill_ledger,
    estimation_policy,
    period_option,
    public_key_file,
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
from meterseal.errors import ConfigurationError
from meterseal.exchange.cli_scope import meter_windows, unsigned_of
from meterseal.ui import milliseconds, progress_bar

if TYPE_CHECKING:
    from meterseal.billing.policy import BillRefused

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
                readings, BillStore(out), authority, ca_cert, public_key_file(billing_key)
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


# In cli_bill_proofs, to keep each command module small.
billing_app.command("export-bill")(export_bill)
billing_app.command("verify-bill")(verify_bill)
