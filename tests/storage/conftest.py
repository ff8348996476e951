"""Storage fixtures: one database per test on SQLite, PostgreSQL and CascaDB (databases.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.acquisition.records import AcceptedReading
from meterseal.crypto import certs
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.registry import MeterRecord
from meterseal.crypto.suites import ED25519, P256
from meterseal.storage import Store
from tests.conftest import NOW
from tests.storage.databases import database, postgres_url  # noqa: F401 - the fixture

T0 = 1_793_534_400  # 2026-11-01T12:00:00Z, an hour boundary
REGIONS = {"M-001": "R01", "M-002": "R01", "M-003": "R02", "M-004": "R02"}


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services), "cascadb"]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[str]:
    """An empty database: SQLite, PostgreSQL or CascaDB (the store's conformance run)."""
    with database(request.param, request, tmp_path, unique_name) as url:
        yield url


def cascadb_limit(request: pytest.FixtureRequest, url: str, reason: str) -> None:
    """Mark this test an expected failure on CascaDB, for a limit docs/storage.md states."""
    if url.startswith("cascadb:"):
        request.applymarker(pytest.mark.xfail(reason=f"CascaDB: {reason}", strict=True))


@dataclass
class Authority:
    """A CA that issues meter records for the storage tests."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def record(self, meter_id: str, region_id: str = "R01", *, fast: bool = True) -> MeterRecord:
        """A registered-looking record with a real certificate (Ed25519 keys are quickest)."""
        suite = ED25519 if fast else P256
        key = generate_meter_key(meter_id, suite)
        cert = certs.issue_meter_certificate(
            self.key, self.certificate, meter_id, key.public_key(), now=NOW, rng=os.urandom
        )
        return MeterRecord.from_certificate(meter_id, suite, cert, f"CUST-{meter_id}", region_id)


@pytest.fixture(scope="session")
def authority() -> Authority:
    """One CA for the session."""
    return Authority(*certs.create_ca("storage test CA", now=NOW, rng=os.urandom))


@pytest.fixture(scope="session")
def fleet(authority: Authority) -> list[MeterRecord]:
    """Four meters in two regions."""
    return [authority.record(m, region) for m, region in REGIONS.items()]


@pytest.fixture
def store(db_url: str, fleet: list[MeterRecord]) -> Iterator[Store]:
    """A migrated store with the four test meters registered."""
    with Store.open(db_url) as opened:
        opened.register_meters(fleet, now=NOW)
        yield opened


def pseudonym(meter_id: str) -> bytes:
    """A stand-in for the keyed pseudonym: 16 bytes derived from the meter id."""
    return hashlib.sha256(meter_id.encode()).digest()[:16]


def reading(
    meter_id: str,
    counter: int,
    *,
    energy_wh: int = 100,
    timestamp: int | None = None,
    interval: int = 900,
    variant: bytes = b"",
) -> AcceptedReading:
    """An accepted reading whose signed original is a deterministic stand-in."""
    ts = T0 + counter * interval if timestamp is None else timestamp
    original = f"sign1|{meter_id}|{counter}|{ts}|{energy_wh}|".encode() + variant
    return AcceptedReading(
        meter_id=meter_id,
        counter=counter,
        timestamp=ts,
        interval=interval,
        energy_wh=energy_wh,
        suite="ed25519",
        signed_original=original,
        sent_at=ts + 1,
        received_at=ts + 1.5,
        region_id=REGIONS.get(meter_id, "R99"),
        pseudonym=pseudonym(meter_id),
    )
