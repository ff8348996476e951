"""Exchange fixtures: a store with registered meters whose keys the tests hold to sign readings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.crypto import certs
from meterseal.crypto.keys import MeterKey, generate_meter_key
from meterseal.crypto.packet import sign_reading
from meterseal.crypto.registry import MeterRecord
from meterseal.crypto.suites import ED25519
from meterseal.model import Reading
from meterseal.storage import Store, StoreRegistry
from tests.conftest import NOW
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

METERS = ("MTR-A", "MTR-B")


@dataclass
class Fleet:
    """A store with `METERS` registered (customer CUST-<meter>) and their signing keys."""

    store: Store
    ca: x509.Certificate
    keys: dict[str, MeterKey]

    def sign(self, meter_id: str, counter: int, timestamp: int, energy_wh: int) -> bytes:
        """The meter's signed original of a 900 s reading."""
        reading = Reading(meter_id, counter, timestamp, 900, energy_wh)
        return sign_reading(reading, self.keys[meter_id], ED25519, now=NOW)

    def registry(self) -> StoreRegistry:
        """The store's meters, verified against the CA."""
        return StoreRegistry(self.store, self.ca)


ANONYMIZER = Anonymizer(b"k" * 32)


@pytest.fixture
def fleet(db_url: str) -> Iterator[Fleet]:  # noqa: F811 - the storage fixture
    ca_key, ca = certs.create_ca("exchange test CA", now=NOW, rng=os.urandom)
    keys, records = {}, []
    for meter_id in METERS:
        key = generate_meter_key(meter_id, ED25519)
        cert = certs.issue_meter_certificate(
            ca_key, ca, meter_id, key.public_key(), now=NOW, rng=os.urandom
        )
        keys[meter_id] = key
        records.append(
            MeterRecord.from_certificate(meter_id, ED25519, cert, f"CUST-{meter_id}", "R1")
        )
    with Store.open(db_url) as store:
        store.register_meters(records, now=NOW)
        yield Fleet(store, ca, keys)
