"""Signed originals exported per customer-month into the KVS read back exactly as stored.

The audit and the fraud job reading from the exported objects give the same reports and the
same ranking as from the relational store, tampered rows included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
import numpy as np
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.bench.months import store_months
from meterseal.billing.auditor import Auditor
from meterseal.billing.completeness import Period
from meterseal.billing.ports import AuditSource
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto import certs
from meterseal.crypto.suites import ED25519
from meterseal.fraud.ensemble import unsupervised
from meterseal.fraud.pipeline import Settings, analyse
from meterseal.fraud.readers import read_store
from meterseal.kvs.export import export_month
from meterseal.kvs.export_format import (
    CustomerMonth,
    ExportFormatError,
    MeterMonth,
    UnsignedRow,
    customer_of,
    decode_index,
    decode_month,
    encode_month,
    month_bounds,
    months_between,
    object_name,
)
from meterseal.kvs.export_objects import MemoryObjects, ObjectMap
from meterseal.kvs.export_read import KvsAuditSource, KvsOriginals, read_consumption
from meterseal.kvs.export_store import StoreObjects
from meterseal.kvs.nodes import LocalDirCatalog, LocalDirNode
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import ObjectStore
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.storage.imports import Assignment, ImportStore
from meterseal.storage.schema import StoredOriginal
from tests.conftest import NOW
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

FIRST = dt.date(2026, 10, 30)
START = (FIRST - dt.date(1970, 1, 1)).days * 86_400
INTERVALS = 2 * 96 + 40  # into November, before NOW (1 Nov 12:00)
PERIOD = Period.days(FIRST, 2)
NOVEMBER = month_bounds("2026-11")[0]
MOVER = "KVS-MOVER/with slash"  # takes a meter over on 1 November


@dataclass
class Stored:
    """A store with signed readings across a month's end, one meter changing hands."""

    url: str
    bills: BillStore
    fleet: list[ProvisionedMeter]
    ca_cert: x509.Certificate
    billing_key: ec.EllipticCurvePrivateKey

    def export(self, objects: ObjectMap | None = None) -> ObjectMap:
        """Export October and November into `objects` (a fresh in-memory map by default)."""
        out = objects if objects is not None else MemoryObjects()
        for month in ("2026-10", "2026-11"):
            export_month(self.bills, out, month)
        return out

    def auditor(self, source: AuditSource) -> Auditor:
        """An auditor with a fixed clock and its own report store (the same database)."""
        return Auditor(
            source,
            self.bills,
            ec.generate_private_key(ec.SECP256R1()),
            self.ca_cert,
            self.billing_key.public_key(),
            clock=lambda: NOW.timestamp(),
        )


@pytest.fixture(scope="module")
def issued() -> tuple[x509.Certificate, list[ProvisionedMeter]]:
    """Three meters; the second customer has two of them."""
    ca_key, ca_cert = certs.create_ca("kvs export test CA", now=NOW, rng=os.urandom)
    meters = provision(ca_key, ca_cert, 3, ED25519, now=NOW, prefix="KVX", workers=1)
    merged = dataclasses.replace(meters[2], customer_id=meters[1].customer_id)
    return ca_cert, [meters[0], meters[1], merged]


@pytest.fixture
def stored(
    db_url: str,  # noqa: F811 - the storage fixture
    issued: tuple[x509.Certificate, list[ProvisionedMeter]],
) -> Iterator[Stored]:
    """The readings stored, the third meter assigned to MOVER from 1 November."""
    ca_cert, fleet = issued
    store = Store.open(db_url)
    store.register_meters(fleet_records(ca_cert, fleet), now=NOW)
    store_months(store, fleet, START, INTERVALS, now=NOW, anonymization_key=b"k" * 32, workers=1)
    ImportStore(store).assign(
        [
            Assignment(fleet[2].customer_id, fleet[2].key.meter_id, 0, NOVEMBER),
            Assignment(MOVER, fleet[2].key.meter_id, NOVEMBER, None),
        ]
    )
    yield Stored(db_url, BillStore(store), fleet, ca_cert, ec.generate_private_key(ec.SECP256R1()))
    store.close()


def test_each_row_is_in_exactly_one_customer_month_object(stored: Stored) -> None:
    objects = stored.export()
    assert isinstance(objects, MemoryObjects)
    fleet = stored.fleet
    expected = {
        object_name(c, m)
        for c in (fleet[0].customer_id, fleet[1].customer_id)
        for m in ("2026-10", "2026-11")
    } | {object_name(MOVER, "2026-11")}
    assert set(objects.names("originals/")) == expected
    mover = decode_month(
        object_name(MOVER, "2026-11"), objects.objects[object_name(MOVER, "2026-11")]
    )
    assert [m.meter_id for m in mover.meters] == [fleet[2].key.meter_id]
    assert mover.meters[0].registered == fleet[2].customer_id
    assert mover.readings == INTERVALS - 2 * 96
    total = sum(decode_month(n, objects.objects[n]).readings for n in objects.names("originals/"))
    assert total == 3 * INTERVALS
    index = decode_index("originals-index/2026-11", objects.objects["originals-index/2026-11"])
    assert [h.customer for h in index.holders[fleet[2].key.meter_id]] == [MOVER]


def test_originals_read_back_byte_for_byte(stored: Stored) -> None:
    reader = KvsOriginals(stored.export())
    ranges = [(START, START + INTERVALS * 900), (NOVEMBER - 3600, NOVEMBER + 3600), (0, 10**10)]
    for meter in stored.fleet:
        for start, end in ranges:
            want = stored.bills.store.originals(meter.key.meter_id, start, end)
            got = reader.originals(meter.key.meter_id, start, end)
            assert [tuple(r) for r in got] == [tuple(r) for r in want]
    assert reader.customers() == stored.bills.customers()
    some = stored.bills.store.originals(stored.fleet[2].key.meter_id, NOVEMBER, NOVEMBER + 7200)
    keys = [(r.meter_id, r.counter) for r in some]
    assert [(p.meter_id, p.counter) for p in reader.packets_by_key(keys)] == keys
    assert reader.absent_months == set()
    september = month_bounds("2026-09")
    assert reader.originals(stored.fleet[0].key.meter_id, *september) == []
    assert reader.absent_months == {"2026-09"}  # never exported: named


def _local_store(root: Path) -> ObjectStore:
    """The KVS over nine local-directory nodes, as the embedded gateway opens it."""
    nodes = [LocalDirNode(f"node-{i}", root / f"node-{i}") for i in range(9)]
    master = b"m" * 32
    return ObjectStore(
        nodes,
        LocalDirCatalog(root / "catalog"),
        lambda bucket: derive_bucket_key(master, bucket),
        clock=lambda: NOW.timestamp(),
        rng=os.urandom,
    )


def test_exported_into_the_kvs_the_nodes_hold_no_reading(stored: Stored, tmp_path: Path) -> None:
    root = tmp_path / "kvs"
    objects = StoreObjects(_local_store(root), policy=parse_policy("hybrid:6+2"))
    try:
        stored.export(objects)
        reader = KvsOriginals(objects)
        for meter in stored.fleet:
            want = stored.bills.store.originals(meter.key.meter_id, 0, 10**10)
            assert reader.originals(meter.key.meter_id, 0, 10**10) == want
        assert objects.names("originals-index/") == [
            "originals-index/2026-10",
            "originals-index/2026-11",
        ]
    finally:
        objects.close()
    held = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert len(held) > 3 * INTERVALS * 100
    original = bytes(want[0].signed_original)
    for needle in (original[-64:], want[0].meter_id.encode(), b"originals/"):
        assert needle not in held


def _bill_all(stored: Stored) -> list[str]:
    service = BillingService(stored.bills, stored.billing_key, clock=lambda: NOW.timestamp())
    tariff = builtin_tariffs().latest("example-tou")
    stored.bills.add_tariff(tariff, now=NOW)
    ids = []
    for customer in (stored.fleet[0].customer_id, stored.fleet[1].customer_id):
        meters = stored.bills.customer_meters(customer)
        ids.append(service.bill_customer(customer, meters, PERIOD, tariff).bill.bill_id)
    return ids


def _reports(stored: Stored, source: AuditSource, bill_ids: list[str]) -> list[dict[str, object]]:
    auditor = stored.auditor(source)
    return [auditor.audit(b).report.to_dict() for b in bill_ids]


def test_the_audit_from_the_kvs_reports_what_the_store_does(stored: Stored) -> None:
    bill_ids = _bill_all(stored)
    # An operator changes a billed reading's energy column and deletes another row.
    victim = stored.fleet[1].key.meter_id
    with stored.bills.store.transaction() as connection:
        connection.execute(
            sa.text(
                "UPDATE signed_originals SET energy_wh = energy_wh + 7 "
                "WHERE meter_id = :m AND counter = (SELECT MIN(counter) FROM signed_originals "
                "WHERE meter_id = :m)"
            ),
            {"m": victim},
        )
        connection.execute(
            sa.text(
                "DELETE FROM signed_originals WHERE meter_id = :m AND counter = "
                "(SELECT MAX(counter) FROM signed_originals WHERE meter_id = :m AND "
                '"timestamp" < :t)'
            ),
            {"m": stored.fleet[0].key.meter_id, "t": NOVEMBER},
        )
    reader = KvsOriginals(stored.export())
    with Store.open_read_only(stored.url) as read_only:
        relational = _reports(stored, BillStore(read_only), bill_ids)
        from_kvs = _reports(stored, KvsAuditSource(BillStore(read_only), reader), bill_ids)
    assert from_kvs == relational
    kinds = {f["kind"] for r in relational for f in r["findings"]}  # type: ignore[attr-defined]
    assert {"altered", "missing"} <= kinds
    assert reader.absent_months == set()


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store with twelve October days of sixteen customers' signed readings."""
    ca_key, ca_cert = certs.create_ca("kvs fraud test CA", now=NOW, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, 16, ED25519, now=NOW, prefix="KVF", workers=1)
    url = f"sqlite:///{tmp_path_factory.mktemp('town') / 'store.db'}"
    with Store.open(url) as store:
        store.register_meters(fleet_records(ca_cert, fleet), now=NOW)
        start = START - 10 * 86_400
        store_months(store, fleet, start, 12 * 96, now=NOW, anonymization_key=b"k" * 32, workers=1)
        with store.transaction() as connection:  # three customers' meters report a tenth
            connection.execute(
                sa.text(
                    'UPDATE signed_originals SET energy_wh = energy_wh / 10 WHERE "timestamp" >= '
                    ":t AND meter_id IN ('KVF-000003', 'KVF-000007', 'KVF-000011')"
                ),
                {"t": start + 7 * 86_400},
            )
    return url


def test_the_fraud_ranking_from_the_kvs_is_the_stores(town: str) -> None:
    objects = MemoryObjects()
    with Store.open_read_only(town) as read_only:
        for month in ("2026-10", "2026-11"):
            export_month(BillStore(read_only), objects, month)
        want = read_store(BillStore(read_only), FIRST - dt.timedelta(days=10), 12, tz="UTC")
    got = read_consumption(KvsOriginals(objects), FIRST - dt.timedelta(days=10), 12, tz="UTC")
    assert got.customers == want.customers
    assert len(got.customers) == 16
    np.testing.assert_array_equal(got.energy, want.energy)
    assert got.phasor == want.phasor  # this fleet's meters send no phasor reports
    ranked = [unsupervised(analyse(d, Settings(seed=1)).table) for d in (want, got)]
    assert ranked[0].score.any()
    assert ranked[0].customers == ranked[1].customers
    np.testing.assert_array_equal(ranked[0].score, ranked[1].score)
    assert len(set(ranked[0].score.round(6))) > 3  # a ranking, not a tie of zeros


def test_an_object_under_another_name_or_malformed_is_refused(stored: Stored) -> None:
    objects = stored.export()
    assert isinstance(objects, MemoryObjects)
    names = objects.names("originals/")
    objects.put(names[0], objects.objects[names[1]])  # swapped by storage
    reader = KvsOriginals(objects)
    customer = decode_month(names[1], objects.objects[names[1]]).customer
    month = names[0].rsplit("/", 1)[1]
    with pytest.raises(ExportFormatError, match="holds"):
        reader.customer_month(customer_of(names[0]), month)
    assert customer != customer_of(names[0]) or month != names[1].rsplit("/", 1)[1]


rows = st.builds(
    StoredOriginal,
    st.just("M1"),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.integers(1, 3600),
    st.integers(-(2**40), 2**40),
    st.sampled_from(["ed25519", "p256"]),
    st.binary(max_size=300),
    st.integers(0, 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=50)
@given(
    st.lists(rows, max_size=5),
    st.lists(st.builds(UnsignedRow, st.integers(0, 2**40), st.integers(0, 10**6), st.binary())),
    st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)), max_size=3),
)
def test_customer_months_round_trip(
    originals: list[StoredOriginal], unsigned: list[UnsignedRow], windows: list[tuple[int, int]]
) -> None:
    data = CustomerMonth(
        "C/1 é",
        "2026-02",
        (MeterMonth("M1", "C0", tuple(windows), tuple(originals), tuple(unsigned)),),
    )
    name = object_name("C/1 é", "2026-02")
    assert decode_month(name, encode_month(data)) == data


@given(st.binary(max_size=200))
def test_garbage_is_refused_with_the_formats_error(junk: bytes) -> None:
    with pytest.raises(ExportFormatError):
        decode_month(object_name("C", "2026-01"), junk)


def test_a_row_of_another_meter_is_refused() -> None:
    row = StoredOriginal("M2", 1, 2, 900, 5, "p256", b"x", 3, 4.0)
    data = CustomerMonth("C", "2026-01", (MeterMonth("M1", "C", (), (row,)),))
    with pytest.raises(ExportFormatError, match="meter M2 under meter M1"):
        decode_month(object_name("C", "2026-01"), encode_month(data))
    body = cbor2.loads(encode_month(data))
    body["meters"][0]["originals"][0][6] = "text, not bytes"
    with pytest.raises(ExportFormatError, match="column"):
        decode_month(object_name("C", "2026-01"), cbor2.dumps(body))


def test_months_between_cuts_at_utc_month_ends() -> None:
    start, _ = month_bounds("2026-12")
    assert months_between(start - 1, start + 1) == ["2026-11", "2026-12"]
    assert months_between(start, start) == []
    assert month_bounds("2024-02")[1] - month_bounds("2024-02")[0] == 29 * 86_400
