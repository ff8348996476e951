"""Importing readings: signed ones verified like ingest, others stored UNSIGNED, nothing twice."""

from __future__ import annotations

import base64
import io

import sqlalchemy as sa

from meterseal.billing.unsigned import UnsignedReading, is_unsigned, unsigned_from_cbor
from meterseal.exchange.csv_readings import CsvReadings
from meterseal.exchange.importer import Importer
from meterseal.storage.imports import ImportStore
from meterseal.storage.schema import signed_originals, unsigned_readings
from tests.exchange.conftest import ANONYMIZER, Fleet

T0 = 1_793_534_400  # 2026-11-01T12:00:00Z


def csv_of(*rows: str) -> CsvReadings:
    return CsvReadings(
        io.StringIO("meter,start,duration,wh,signed\n" + "".join(f"{r}\n" for r in rows))
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_signed_rows_are_verified_and_the_rest_stored_unsigned(fleet: Fleet) -> None:
    signed = fleet.sign("MTR-A", 7, T0, 120)
    forged = bytearray(fleet.sign("MTR-A", 8, T0 + 900, 130))
    forged[-1] ^= 1
    rows = csv_of(
        f"MTR-A,{T0},900,120,{b64(signed)}",  # stored signed
        f"MTR-A,{T0 + 900},900,130,{b64(bytes(forged))}",  # bad signature
        f"MTR-A,{T0 + 1800},900,999,{b64(fleet.sign('MTR-A', 9, T0 + 1800, 140))}",  # wrong wh
        f"MTR-B,{T0},900,55,",  # unsigned
        f"MTR-B,{T0 + 900},900,-1,",  # refused by the parser
        f"MTR-Z,{T0},900,1,",  # unknown meter
        f"MTR-B,{T0 + 1800},900,56,",  # unsigned
    )
    importer = Importer(fleet.store, fleet.registry(), ANONYMIZER)
    report = importer.run(rows, source="csv:test.csv", batch=3)
    assert report.rows == 7
    assert report.outcomes == {"stored signed": 1, "stored unsigned": 2}
    assert [(r.line, r.reason.split(" (")[0]) for r in report.rejected] == [
        (3, "the meter signature is refused"),
        (4, "the row differs from its signed reading"),
        (6, "wh '-1' is negative"),
        (7, "meter MTR-Z is not registered"),
    ]
    assert report.meters == {"MTR-A", "MTR-B"}
    with fleet.store.connection() as c:
        kept = c.execute(sa.select(signed_originals.c.meter_id, signed_originals.c.counter)).all()
        assert kept == [("MTR-A", 7)]
        records = c.scalars(sa.select(unsigned_readings.c.record)).all()
    assert sorted(unsigned_from_cbor(bytes(r)) for r in records) == [
        UnsignedReading("MTR-B", T0, 900, 55),
        UnsignedReading("MTR-B", T0 + 1800, 900, 56),
    ]
    assert all(is_unsigned(bytes(r)) for r in records)
    assert not is_unsigned(signed)
    # The signed reading was stored as ingest stores it: with its anonymized measurement.
    assert fleet.store.counters()["stored"] == 1


def test_importing_again_stores_nothing_twice_and_a_changed_value_is_refused(fleet: Fleet) -> None:
    signed = b64(fleet.sign("MTR-A", 7, T0, 120))
    rows = [f"MTR-A,{T0},900,120,{signed}", f"MTR-B,{T0},900,55,", f"MTR-B,{T0},900,55,"]
    importer = Importer(fleet.store, fleet.registry(), ANONYMIZER)
    first = importer.run(csv_of(*rows), source="csv:a.csv")
    assert first.outcomes == {"stored signed": 1, "stored unsigned": 1, "duplicate": 1}
    again = importer.run(csv_of(*rows), source="csv:b.csv")
    assert again.outcomes == {"duplicate": 3}
    assert not again.rejected
    changed = importer.run(csv_of(f"MTR-B,{T0},900,56,"), source="csv:c.csv")
    assert [r.reason for r in changed.rejected] == [
        "another reading is stored for meter MTR-B at this time"
    ]
    (kept,) = ImportStore(fleet.store).unsigned(["MTR-B"], T0, T0 + 900)
    assert kept.energy_wh == 55
