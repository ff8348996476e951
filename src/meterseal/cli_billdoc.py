"""`meterseal bill-doc`: a customer's bill as HTML and PDF, from the signed bill and readings.

It reads the store read-only: the signed bill, its manifest, the billed readings' signed
originals, the meter certificates and the audit reports; `billing.document` checks them
(billing and meter signatures, the manifest against the signed Merkle root, the authority's
countersignature when its key is at hand) before anything is rendered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from meterseal.cli_billing_parts import AuthorityKeyFile, BillingKeyFile, MeterCaFile
from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    StoreUrl,
    console,
    shown,
)
from meterseal.errors import ConfigurationError
from meterseal.ui import milliseconds

billdoc_app = typer.Typer()


@billdoc_app.command("bill-doc")
def bill_doc(
    bill_id: Annotated[str, typer.Argument(metavar="BILL", help="bill id (CUSTOMER/START-END)")],
    html: Annotated[Path | None, typer.Option(help="write the HTML page here")] = None,
    pdf: Annotated[Path | None, typer.Option(help="write the PDF here")] = None,
    ca: MeterCaFile = None,
    billing_key: BillingKeyFile = None,
    authority_key: AuthorityKeyFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Render a bill as HTML and/or PDF: charges, meters, consumption charts, verification code.

    Every figure comes from the signed bill and the meters' signed readings, checked first.
    The authority's key defaults to the deployment's metrology.pub.pem when it exists.
    """
    from cryptography import x509

    from meterseal.billing.bill import manifest_from_cbor
    from meterseal.billing.document import AuditInput, bill_document
    from meterseal.billing.document_html import render_html
    from meterseal.billing.document_pdf import render_pdf
    from meterseal.billing.document_view import document_view
    from meterseal.cli_billing_parts import bill_ledger, public_key_file
    from meterseal.crypto.keys import kid_of, public_bytes
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    if html is None and pdf is None:
        raise typer.BadParameter("give --html FILE, --pdf FILE or both")
    started = time.perf_counter()
    ca = ca or deployment_dir / "ca.cert.pem"
    default_authority = deployment_dir / "metrology.pub.pem"
    if authority_key is None and default_authority.exists():
        authority_key = default_authority
    try:
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the meter CA certificate {ca}: {exc}") from exc
    billing = public_key_file(billing_key or deployment_dir / "billing.pub.pem")
    authority = None if authority_key is None else public_key_file(authority_key)
    with Store.open_read_only(store) as db:
        bills = BillStore(db)
        stored = bills.bill(bill_id)
        if stored is None:
            raise ConfigurationError(f"no bill {bill_id!r} in {shown(store)}")
        keys = [(e.meter_id, e.counter) for e in manifest_from_cbor(stored.manifest)]
        packets = bills.packets_by_key(keys)
        reports = bills.reports(bill_id)
        countersigned = next((r.countersigned_bill for r in reports if r.countersigned_bill), None)
        # Its standing among the customer's bills: in force, or which correction refers to it.
        entry = bill_ledger(bills, stored.customer_id).get(bill_id)
        doc = bill_document(
            stored.signed_bill,
            stored.manifest,
            packets,
            billing_key=billing,
            meters=bills.meter_directory(ca_cert),
            audit=AuditInput(
                None if countersigned is None else bytes(countersigned),
                reports[0].clean if reports else None,
                authority,
                None if authority is None else kid_of(public_bytes(authority)),
            ),
            standing=None if entry is None else entry.standing,
        )
    view = document_view(doc)
    for path, data in (
        (html, None if html is None else render_html(view).encode("utf-8")),
        (pdf, None if pdf is None else render_pdf(view, issued_at=doc.bill.issued_at)),
    ):
        if path is not None and data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            console.print(str(path), soft_wrap=True)
    console.print(f"verification code {doc.code}")
    console.print(
        f"{view.audit}; rendered in {milliseconds(time.perf_counter() - started)}", soft_wrap=True
    )
