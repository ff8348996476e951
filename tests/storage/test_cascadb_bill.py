"""A month billed from readings stored through CascaDB equals the month billed from PostgreSQL.

The same signed readings go into a store on PostgreSQL and one on CascaDB (the secure KVS in a
directory); each store's billing service bills every customer with the same billing key and
clock. The bills (their CBOR, what is signed), their manifests (the packets' leaf hashes: hash
chain and Merkle root) and the rendered PDF documents must be byte-equal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.bench.months import sign_months
from meterseal.billing.auditor import Auditor
from meterseal.billing.bill import manifest_from_cbor, parse_signed_bill
from meterseal.billing.completeness import Period
from meterseal.billing.document import AuditInput, bill_document
from meterseal.billing.document_pdf import render_pdf
from meterseal.billing.document_view import document_view
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto import certs
from meterseal.crypto.suites import ED25519
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.storage.cascadb_store import close_embedded
from meterseal.storage.scratch import scratch_schema
from tests.conftest import NOW

pytestmark = pytest.mark.services

MONTH = Period.days(dt.date(2026, 10, 1), 31)  # October: 2,976 readings a meter
ANONYMIZATION_KEY = b"c" * 32


@pytest.fixture(scope="module")
def fleet() -> tuple[list[ProvisionedMeter], Any]:
    """Three meters of two customers (the second has two), and the CA's certificate."""
    key, ca_cert = certs.create_ca("cascadb bill CA", now=NOW, rng=os.urandom)
    meters = provision(key, ca_cert, 3, ED25519, now=NOW, prefix="CDB", workers=1)
    shared = dataclasses.replace(meters[2], customer_id=meters[1].customer_id)
    return [*meters[:2], shared], ca_cert


@pytest.fixture
def stores(
    postgres_url: str,
    unique_name: str,
    tmp_path: Path,
    fleet: tuple[list[ProvisionedMeter], Any],
) -> Iterator[dict[str, Store]]:
    """The same month of signed readings stored on PostgreSQL and on CascaDB."""
    meters, ca_cert = fleet
    directory = tmp_path / "cascadb"
    with scratch_schema(postgres_url, unique_name) as pg_url:
        opened = {
            "postgresql": Store.open(pg_url),
            "cascadb": Store.open(f"cascadb:///{directory}"),
        }
        try:
            batches = list(
                sign_months(
                    meters, MONTH.start, MONTH.slots, now=NOW,
                    anonymization_key=ANONYMIZATION_KEY, workers=1,
                )
            )  # fmt: skip
            for store in opened.values():
                store.register_meters(fleet_records(ca_cert, meters), now=NOW)
                for chunk in batches:
                    store.save_batch([r for month in chunk for r in month], [])
            yield opened
        finally:
            for store in opened.values():
                store.close()
            close_embedded(directory)


def _bill_month(store: Store, key: ec.EllipticCurvePrivateKey) -> dict[str, bytes]:
    """Every customer billed for the month: the bill, its manifest, the log's size."""
    bills = BillStore(store)
    tariff = builtin_tariffs().latest("example-tou")
    bills.add_tariff(tariff, now=NOW)
    service = BillingService(bills, key, clock=lambda: NOW.timestamp())
    found: dict[str, bytes] = {}
    for customer, meters in sorted(bills.customers().items()):
        billed = service.bill_customer(customer, meters, MONTH, tariff)
        stored = bills.bill(billed.bill.bill_id)
        assert stored is not None
        found[f"{customer} total"] = str(billed.bill.charges.total).encode()
        found[f"{customer} chain head"] = billed.bill.chain_head
        found[f"{customer} merkle root"] = billed.bill.merkle_root
        found[f"{customer} bill"] = billed.bill.to_cbor()  # what is signed
        found[f"{customer} manifest"] = stored.manifest  # hash chain and Merkle root
    # Not the log's root: its leaves hash the signed bills, and ECDSA signs differently
    # every time. The documents below compare what the signatures cover.
    found["log size"] = str(service.log.size).encode()
    return found


def _document(store: Store, signed_bill: bytes, key: ec.EllipticCurvePrivateKey, ca: Any) -> bytes:
    """The PDF of `signed_bill` from this store's manifest, packets and meter directory."""
    bills = BillStore(store)
    bill_id = parse_signed_bill(signed_bill)[0].bill_id
    stored = bills.bill(bill_id)
    assert stored is not None
    keys = [(e.meter_id, e.counter) for e in manifest_from_cbor(stored.manifest)]
    document = bill_document(
        signed_bill,
        stored.manifest,
        bills.packets_by_key(keys),
        billing_key=key.public_key(),
        meters=bills.meter_directory(ca),
        audit=AuditInput(),
    )
    return render_pdf(document_view(document), issued_at=int(NOW.timestamp()))


def test_a_month_billed_through_cascadb_equals_the_month_billed_from_postgresql(
    stores: dict[str, Store], fleet: tuple[list[ProvisionedMeter], Any]
) -> None:
    _, ca_cert = fleet
    key = ec.generate_private_key(ec.SECP256R1())
    counts = {name: store.counters() for name, store in stores.items()}
    assert counts["cascadb"] == counts["postgresql"] == {"stored": 3 * MONTH.slots}
    billed = {name: _bill_month(store, key) for name, store in stores.items()}
    assert len(billed["postgresql"]) == 1 + 5 * 2  # two customers
    assert billed["cascadb"] == billed["postgresql"]
    # ECDSA signatures differ run to run, so both documents print PostgreSQL's signed bills
    # (the same bills, as compared above), each from its own store's manifest and packets.
    for stored in BillStore(stores["postgresql"]).bills():
        documents = {n: _document(s, stored.signed_bill, key, ca_cert) for n, s in stores.items()}
        assert documents["cascadb"] == documents["postgresql"], stored.bill_id
    # The auditor, reading CascaDB through a read-only engine, finds every bill clean.
    store = stores["cascadb"]
    bills = BillStore(store)
    with Store.open_read_only(store.engine.url) as reader:
        auditor = Auditor(
            BillStore(reader), bills, ec.generate_private_key(ec.SECP256R1()), ca_cert,
            key.public_key(), clock=lambda: NOW.timestamp(),
        )  # fmt: skip
        for kept in bills.bills():
            assert auditor.audit(kept.bill_id).report.clean, kept.bill_id
