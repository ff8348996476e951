"""A stored, signed month to bill and audit, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.bench.months import store_months
from meterseal.billing.auditor import Auditor
from meterseal.billing.completeness import Period
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import Tariff, builtin_tariffs
from meterseal.crypto import certs
from meterseal.crypto.suites import ED25519
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.conftest import NOW
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

ANONYMIZATION_KEY = b"a" * 32
# One UTC day before NOW (certificates are valid from NOW, and readings are sent at NOW).
PERIOD = Period.days(dt.date(2026, 10, 30), 1)


@dataclass
class Month:
    """A store holding a day of signed readings for three meters and two customers."""

    url: str
    store: Store
    bills: BillStore
    ca_cert: x509.Certificate
    fleet: list[ProvisionedMeter]
    billing_key: ec.EllipticCurvePrivateKey
    authority_key: ec.EllipticCurvePrivateKey
    tariff: Tariff
    period: Period = PERIOD

    def service(self) -> BillingService:
        """A billing service on this store."""
        return BillingService(self.bills, self.billing_key, clock=lambda: NOW.timestamp())

    def auditor(self) -> Auditor:
        """An auditor reading this store through a read-only engine."""
        source = BillStore(Store.open_read_only(self.url))
        return Auditor(
            source,
            self.bills,
            self.authority_key,
            self.ca_cert,
            self.billing_key.public_key(),
            clock=lambda: NOW.timestamp(),
        )

    def customer(self, customer_id: str) -> list[str]:
        """The meters of a customer."""
        return self.bills.customers()[customer_id]

    def execute(self, sql: str, **params: object) -> None:
        """Tamper with the database directly, as an operator with write access could."""
        with self.store.transaction() as connection:
            connection.execute(sa.text(sql), params)


@pytest.fixture(scope="session")
def ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The billing tests' CA."""
    return certs.create_ca("billing test CA", now=NOW, rng=os.urandom)


@pytest.fixture(scope="session")
def fleet(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> list[ProvisionedMeter]:
    """Three Ed25519 meters; the second customer has two of them."""
    meters = provision(*ca, 3, ED25519, now=NOW, prefix="BILL", workers=1)
    return [*meters[:2], dataclasses.replace(meters[2], customer_id=meters[1].customer_id)]


@pytest.fixture
def month(
    db_url: str,  # noqa: F811 - the storage fixture
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    fleet: list[ProvisionedMeter],
) -> Iterator[Month]:
    """A fresh store with the fleet registered and a day of its signed readings stored."""
    store = Store.open(db_url)
    store.register_meters(fleet_records(ca[1], fleet), now=NOW)
    store_months(
        store,
        fleet,
        PERIOD.start,
        PERIOD.slots,
        now=NOW,
        anonymization_key=ANONYMIZATION_KEY,
        workers=1,
    )
    bills = BillStore(store)
    tariff = builtin_tariffs().latest("example-tou")
    bills.add_tariff(tariff, now=NOW)
    yield Month(
        db_url,
        store,
        bills,
        ca[1],
        fleet,
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
        tariff,
    )
    store.close()
