"""The customer's proofs: `export-bill` writes a bill and reading proofs, `verify-bill` checks them.

Registered on the billing commands by `cli_billing`; `verify-bill` needs public material only.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.cli_billing_parts import (
    AuthorityKeyFile,
    BillingKeyFile,
    MeterCaFile,
    bill_ledger,
    period_option,
    public_key_file,
)
from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    StoreUrl,
    console,
    shown,
)
from meterseal.errors import ConfigurationError, MetersealError
from meterseal.ui import milliseconds

if TYPE_CHECKING:
    from meterseal.storage.bill_store import BillStore


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


def verify_bill(
    bill_file: Annotated[Path, typer.Argument(metavar="BILL")],
    reading: Annotated[
        Path | None,
        typer.Option(help="a reading proof file (export-bill --reading); without: the bill alone"),
    ] = None,
    ca: MeterCaFile = None,
    billing_key: BillingKeyFile = None,
    authority_key: AuthorityKeyFile = None,
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
        authority = public_key_file(authority_key)
        signed = bill_file.read_bytes()
        billing = public_key_file(billing_key)
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
