"""Bills of imported readings: UNSIGNED ones only when allowed and said so, tenants by dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from meterseal.billing.bill import parse_signed_bill
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import PERIOD
from tests.billing.on_disk import TARIFFS, month_on_disk, run

DAY = dt.datetime.fromtimestamp(PERIOD.start, dt.UTC).date().isoformat()
METER = "MTR-000001"
CUSTOMER = "CUST-MTR-000001"


def bill_args(deployment: Path, store: str, *extra: str) -> list[str]:
    return ["bill", "--tariff", "example-flat@1", "--from", DAY, "--days", "1",
            "-d", str(deployment), "--store", store, *extra]  # fmt: skip


def stored_bill(store: str, customer: str = CUSTOMER):  # type: ignore[no-untyped-def]
    with Store.open(store) as db:
        (row,) = BillStore(db).bills(customer)
    return parse_signed_bill(row.signed_bill)[0]


def import_rows(tmp_path: Path, deployment: Path, store: str, slots: range, wh: int) -> None:
    """UNSIGNED readings of METER for the period's slots `slots`, `wh` each."""
    data = tmp_path / "u.csv"
    lines = [f"{METER},{PERIOD.start + 900 * s},900,{wh}" for s in slots]
    data.write_text("meter,start,duration,wh\n" + "\n".join(lines) + "\n")
    run("import", "csv", str(data), "-d", str(deployment), "--store", store)


def delete_signed(store: str, slots: range) -> int:
    """Delete METER's signed readings of these slots (a gap the import will fill); their Wh."""
    stamps = [PERIOD.start + 900 * s for s in slots]
    with Store.open(store) as db, db.transaction() as c:
        so = sa.table("signed_originals", sa.column("meter_id"), sa.column("timestamp"),
                      sa.column("energy_wh"))  # fmt: skip
        where = sa.and_(so.c.meter_id == METER, so.c.timestamp.in_(stamps))
        gone = int(c.scalar(sa.select(sa.func.sum(so.c.energy_wh)).where(where)) or 0)
        c.execute(sa.delete(so).where(where))
    return gone


def test_unsigned_fill_gaps_only_when_allowed_and_the_bill_says_how_much(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    delete_signed(store, range(10, 20))
    # UNSIGNED readings for the 10 empty slots and for 10 slots a signed reading fills.
    import_rows(tmp_path, deployment, store, range(0, 20), 7)
    billed = run(*bill_args(deployment, store, "--allow-unsigned"))
    assert "UNSIGNED imported readings were allowed" in billed
    bill = stored_bill(store)
    (meter,) = bill.meters
    assert (meter.expected, meter.received, meter.estimated_wh) == (96, 96, 0)
    assert bill.unsigned_wh == 70  # the 10 gap slots only: signed readings win their slots
    assert bill.packets == 96
    audited = run("audit", "-d", str(deployment), "--store", store)
    assert "countersigned" in audited

    # An UNSIGNED reading altered in the store after billing is named by the audit.
    with Store.open(store) as db, db.transaction() as c:
        c.execute(sa.text("UPDATE unsigned_readings SET energy_wh = 9 WHERE timestamp = :t"),
                  {"t": PERIOD.start + 900 * 12})  # fmt: skip
    found = run("audit", "-d", str(deployment), "--store", store, code=1)
    assert "altered" in found
    assert f"{METER} #-{PERIOD.start + 900 * 12}" in found


def test_without_the_flag_unsigned_readings_are_left_out(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    delete_signed(store, range(10, 15))
    import_rows(tmp_path, deployment, store, range(10, 15), 7)
    run(*bill_args(deployment, store))
    bill = stored_bill(store)
    assert bill.unsigned_wh is None
    assert bill.meters[0].received == 91
    assert bill.meters[0].gaps == ((PERIOD.start + 9000, PERIOD.start + 13500),)
    assert "countersigned" in run("audit", "-d", str(deployment), "--store", store)


def test_an_unsigned_reading_proof_verifies_as_unsigned(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    delete_signed(store, range(3, 4))
    import_rows(tmp_path, deployment, store, range(3, 4), 11)
    run(*bill_args(deployment, store, "--allow-unsigned"))
    run("audit", "-d", str(deployment), "--store", store)
    bill_id = f"{CUSTOMER}/{PERIOD.start}-{PERIOD.end}"
    counter = -(PERIOD.start + 900 * 3)
    out = tmp_path / "out"
    run("export-bill", bill_id, "--out", str(out), "--reading", f"{METER}:{counter}",
        "--store", store)  # fmt: skip
    stem = bill_id.replace("/", "_")
    verified = run(
        "verify-bill", str(out / f"{stem}.bill.cose"),
        "--reading", str(out / f"{stem}.{METER}.{counter}.proof.cbor"),
        "--ca", str(deployment / "ca.cert.pem"),
        "--billing-key", str(deployment / "billing.pub.pem"),
        "--authority-key", str(deployment / "metrology.pub.pem"),
    )  # fmt: skip
    assert "11 Wh, an UNSIGNED import: no meter signature" in verified
    assert "the bill counts 11 Wh of UNSIGNED imported readings" in verified
    assert "packet 4 of 96" in verified


def test_two_tenants_of_one_meter_are_each_billed_for_their_part(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    noon = dt.datetime.fromtimestamp(PERIOD.start + 43_200, dt.UTC).isoformat()
    tenants = tmp_path / "t.csv"
    tenants.write_text(f"customer,meter,from,to\nALICE,{METER},{DAY},{noon}\nBOB,{METER},{noon},\n")
    run("customers", "import", str(tenants), "--store", store)
    run(*bill_args(deployment, store, "--customer", "ALICE", "--customer", "BOB"))
    alice, bob = stored_bill(store, "ALICE"), stored_bill(store, "BOB")
    half = PERIOD.start + 43_200
    assert alice.meters[0].window == (PERIOD.start, half)
    assert bob.meters[0].window == (half, PERIOD.end)
    # Each is charged standing for their own dates (the audit recomputes it, below).
    assert (alice.standing, bob.standing) == ((PERIOD.start, half), (half, PERIOD.end))
    assert (alice.meters[0].expected, alice.meters[0].received) == (48, 48)
    assert (bob.meters[0].expected, bob.meters[0].received) == (48, 48)
    assert (alice.packets, bob.packets) == (48, 48)
    with Store.open(store) as db:
        day = sum(r.energy_wh for r in db.originals(METER, PERIOD.start, PERIOD.end))
    assert alice.energy_wh + bob.energy_wh == day
    audited = run("audit", "-d", str(deployment), "--store", store)
    assert "2 of 2 bills countersigned" in audited
    # The registered customer no longer has the meter this day: nothing to bill them.
    none = run(*bill_args(deployment, store, "--customer", CUSTOMER), code=2)
    assert f"no customer '{CUSTOMER}'" in none

    # Moving BOB's move-in after billing: the audit names the dates that no longer match.
    with Store.open(store) as db, db.transaction() as c:
        c.execute(sa.text("UPDATE meter_assignments SET valid_from = valid_from + 900 "
                          "WHERE customer_id = 'BOB'"))  # fmt: skip
    found = run("audit", "-d", str(deployment), "--store", store, code=1)
    assert f"meters[{METER}].window" in found


def test_dates_and_unsigned_energy_are_on_the_bill_only_when_set() -> None:
    from decimal import Decimal

    from hypothesis import given
    from hypothesis import strategies as st

    from meterseal.billing.bill import Bill, MeterStatement
    from meterseal.billing.tariff_pricing import Charges

    def a_bill(window: tuple[int, int] | None, unsigned_wh: int | None) -> Bill:
        statement = MeterStatement(METER, 96, 96, 5, 0, (), (), (), window=window)
        return Bill("B", "C", PERIOD, 1, "t", 1, b"\0" * 32, "linear", (statement,),
                    Charges("EUR", (), Decimal(0)), 96, b"\1" * 32, b"\2" * 32,
                    unsigned_wh=unsigned_wh)  # fmt: skip

    plain = a_bill(None, None).to_cbor()
    assert b"window" not in plain
    assert b"unsigned_wh" not in plain

    @given(
        st.none() | st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
        st.none() | st.integers(0, 2**53),
    )
    def round_trip(window: tuple[int, int] | None, unsigned_wh: int | None) -> None:
        bill = a_bill(window, unsigned_wh)
        assert Bill.from_cbor(bill.to_cbor()) == bill

    round_trip()


def test_a_refused_bill_points_at_the_unsigned_readings_it_left_out(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    delete_signed(store, range(96))
    import_rows(tmp_path, deployment, store, range(96), 5)
    refused = run(*bill_args(deployment, store), code=1)
    assert "no readings in the period" in refused
    assert "96 UNSIGNED imported readings of the refused customers' meters" in refused
    assert "--allow-unsigned counts them" in refused
    billed = run(*bill_args(deployment, store, "--allow-unsigned"))
    assert "1 bills signed" in billed
    assert stored_bill(store).unsigned_wh == 480


def test_a_rebill_counts_what_its_bill_could_and_tenants_keep_their_dates(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "flat.toml"), "--store", store)
    delete_signed(store, range(0, 4))
    import_rows(tmp_path, deployment, store, range(0, 4), 7)
    noon = dt.datetime.fromtimestamp(PERIOD.start + 43_200, dt.UTC).isoformat()
    tenants = tmp_path / "t.csv"
    tenants.write_text(f"customer,meter,from,to\nALICE,{METER},{DAY},{noon}\n")
    run("customers", "import", str(tenants), "--store", store)
    run(*bill_args(deployment, store, "--customer", "ALICE", "--allow-unsigned"))
    base = f"ALICE/{PERIOD.start}-{PERIOD.end}"
    common = ["-d", str(deployment), "--store", store]
    run("rebill", base, "--reason", "late readings", *common)
    with Store.open(store) as db:
        rebilled = [parse_signed_bill(b.signed_bill)[0] for b in BillStore(db).bills("ALICE")]
    new = next(b for b in rebilled if b.kind == "rebill")
    assert new.unsigned_wh == 28
    assert new.meters[0].window == (PERIOD.start, PERIOD.start + 43_200)
    assert new.packets == 48
    audited = run("audit", *common)
    assert "3 of 3 bills countersigned" in audited
