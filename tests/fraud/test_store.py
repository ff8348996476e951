"""The fraud job reads customers' stored readings (signed originals), and ranks from them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509

from meterseal.bench.months import store_months
from meterseal.crypto import certs
from meterseal.crypto.suites import ED25519
from meterseal.fraud.data import FraudDataError, UnknownCustomer
from meterseal.fraud.readers import read_store
from meterseal.meter.load import Fleet
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.command_line import invoke
from tests.conftest import NOW
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

FIRST = dt.date(2026, 10, 28)
DAYS = 3


@pytest.fixture(scope="module")
def issued() -> tuple[x509.Certificate, list[ProvisionedMeter]]:
    """A CA and four meters; the second customer has two of them."""
    ca_key, ca_cert = certs.create_ca("fraud test CA", now=NOW, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, 4, ED25519, now=NOW, prefix="FRD", workers=1)
    merged = dataclasses.replace(fleet[2], customer_id=fleet[1].customer_id)
    return ca_cert, [fleet[0], fleet[1], merged, fleet[3]]


@pytest.fixture
def meters(issued: tuple[x509.Certificate, list[ProvisionedMeter]]) -> list[ProvisionedMeter]:
    """The four meters."""
    return issued[1]


@pytest.fixture
def stored(
    db_url: str,  # noqa: F811 - the storage fixture
    issued: tuple[x509.Certificate, list[ProvisionedMeter]],
) -> str:
    """A store with three days of the meters' signed readings."""
    ca_cert, fleet = issued
    with Store.open(db_url) as store:
        store.register_meters(fleet_records(ca_cert, fleet), now=NOW)
        start = (FIRST - dt.date(1970, 1, 1)).days * 86_400
        store_months(
            store, fleet, start, DAYS * 96, now=NOW, anonymization_key=b"k" * 32, workers=1
        )
    return db_url


def test_a_customers_meters_are_summed_per_interval(
    stored: str, meters: list[ProvisionedMeter]
) -> None:
    with Store.open_read_only(stored) as store:
        data = read_store(BillStore(store), FIRST, DAYS, tz="UTC")
    honest = Fleet(7).energy(range(4), (FIRST - dt.date(1970, 1, 1)).days * 86_400, DAYS * 96)
    expected = {
        meters[0].customer_id: honest[0],
        meters[1].customer_id: honest[1] + honest[2],
        meters[3].customer_id: honest[3],
    }
    assert set(data.customers) == set(expected)
    for customer, wh in expected.items():
        np.testing.assert_allclose(data.energy[data.index(customer)].ravel(), wh / 1000.0)
    assert data.first_day == FIRST
    assert data.periods == DAYS


def test_the_store_is_read_in_local_days(stored: str, meters: list[ProvisionedMeter]) -> None:
    with Store.open_read_only(stored) as store:
        data = read_store(BillStore(store), FIRST, 2, tz="Europe/Berlin")
    # Berlin is UTC+1 in late October: its day starts at 23:00 UTC the day before, an hour
    # before the first stored reading.
    honest = Fleet(7).energy([0], (FIRST - dt.date(1970, 1, 1)).days * 86_400, DAYS * 96)[0]
    row = data.energy[data.index(meters[0].customer_id)]
    assert (data.first_day, data.periods, data.tz) == (FIRST, 2, "Europe/Berlin")
    assert np.isnan(row[0, :4]).all()
    np.testing.assert_allclose(row[0, 4:], honest[:92] / 1000.0)
    np.testing.assert_allclose(row[1], honest[92:188] / 1000.0)


def test_unknown_customers_and_empty_periods_are_errors(stored: str) -> None:
    with Store.open_read_only(stored) as store:
        bills = BillStore(store)
        with pytest.raises(UnknownCustomer, match="no customer 'nobody'"):
            read_store(bills, FIRST, DAYS, customers=["nobody"], tz="UTC")
        with pytest.raises(FraudDataError, match="no readings stored"):
            read_store(bills, FIRST - dt.timedelta(days=100), 2, tz="UTC")


def test_rank_from_the_store(stored: str, tmp_path: Path) -> None:
    out = tmp_path / "ranking.csv"
    result = invoke(
        [
            "fraud",
            "rank",
            "--store",
            stored,
            "--from",
            str(FIRST),
            "--days",
            str(DAYS),
            "--tz",
            "UTC",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("rank,customer_id,score,pattern")
    assert len(lines) == 1 + 3
    assert (tmp_path / "ranking-umatrix.png").stat().st_size > 10_000
