"""Billing refuses to mislead: no readings, too much estimated, a dry run, the ids printed."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.bill import Bill, MeterStatement, parse_signed_bill
from meterseal.billing.policy import BillRefused, EstimationPolicy, screen
from meterseal.billing.service import BillingService, bill_id_for
from meterseal.billing.tariff import ChargeLine, Charges
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import PERIOD, Month
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run
from tests.conftest import NOW

FIRST = PERIOD.start // 900  # the counter of a meter's first reading of the period


def _drop_readings(store: str, meter_id: str, count: int) -> None:
    """Delete a meter's first `count` readings of the period (a gap billing must estimate)."""
    with Store.open(store) as db, db.transaction() as connection:
        connection.execute(
            sa.text("DELETE FROM signed_originals WHERE meter_id = :m AND counter < :c"),
            {"m": meter_id, "c": FIRST + count},
        )


def _log_size(store: str) -> int:
    with Store.open(store) as db:
        return len(BillStore(db).log_leaves())


def test_a_period_without_readings_is_refused_and_nothing_is_signed(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 2)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    later = run(
        "bill", "--tariff", "example-tou", "--from", "2026-11-05", "--days", "1",
        "-d", str(deployment), "--store", store, code=1,
    )  # fmt: skip
    for meter in fleet:
        assert f"refused {meter.customer_id}: no readings in the period (0 of 96 slots)" in later
    assert "0 bills signed and appended to the bill log, 2 refused" in later
    assert _log_size(store) == 0
    # Many refusals: one line per reason, naming every customer.
    grouped = run(
        "bill", "--tariff", "example-tou", "--from", "2026-11-05", "--days", "1", "--show", "1",
        "-d", str(deployment), "--store", store, code=1,
    )  # fmt: skip
    names = ", ".join(m.customer_id for m in fleet)
    assert f"refused 2, no readings in the period: {names}" in grouped
    assert "(--show 2 gives each refusal's own reason)" in grouped
    # One customer without readings among others: refused and named, the others billed, exit 0.
    _drop_readings(store, fleet[1].key.meter_id, 96)
    mixed = bill_on_disk(deployment, store, "example-tou")
    assert f"refused {fleet[1].customer_id}: no readings" in mixed
    assert f"{fleet[0].customer_id}/{PERIOD.start}-{PERIOD.end} 96/96" in mixed
    assert "1 bills signed and appended to the bill log, 1 refused" in mixed
    assert _log_size(store) == 1


def test_a_mostly_estimated_bill_needs_the_flag_and_carries_it(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    meter, customer = fleet[0].key.meter_id, fleet[0].customer_id
    _drop_readings(store, meter, 39)  # 39 of 96 slots: 40.63% estimated
    refused = bill_on_disk(deployment, store, "example-tou", code=1)
    assert (
        f"refused {customer}: 40.63% estimated (39 of 96 slots), above the 10% limit "
        "(--max-estimated-percent); bill it anyway with --allow-estimated"
    ) in refused
    assert _log_size(store) == 0
    # A higher limit lets it through unflagged; so would a lower share.
    dry = bill_on_disk(
        deployment, store, "example-tou", "--max-estimated-percent", "41", "--dry-run"
    )
    assert "57/96 40.63%" in dry
    assert "over the estimated limit" not in dry
    assert "--allow-estimated" not in dry
    allowed = bill_on_disk(deployment, store, "example-tou", "--allow-estimated")
    assert "57/96 40.63%" in allowed
    assert "over the estimated limit" in allowed
    bill_id = bill_id_for(customer, PERIOD)
    with Store.open(store) as db:
        stored = BillStore(db).bill(bill_id)
    assert stored is not None
    bill, _ = parse_signed_bill(stored.signed_bill)  # the flag is in the signed payload
    assert bill.estimated_over_limit == Decimal(10)
    assert "1 of 1 bills countersigned" in run("audit", "-d", str(deployment), "--store", store)
    exported = run("export-bill", bill_id, "--out", str(tmp_path / "out"), "--store", store)
    assert f"(reading {meter}:{FIRST + 39})" in exported  # the first reading billed
    stem = bill_id.replace("/", "_")
    proof = tmp_path / "out" / f"{stem}.{meter}.{FIRST + 39}.proof.cbor"
    verified = run(
        "verify-bill", str(tmp_path / "out" / f"{stem}.bill.cose"), "--reading", str(proof),
        "--ca", str(deployment / "ca.cert.pem"),
        "--billing-key", str(deployment / "billing.pub.pem"),
        "--authority-key", str(deployment / "metrology.pub.pem"),
    )  # fmt: skip
    assert "estimated: 40.63% of the period's slots, OVER the 10% limit" in verified


def test_a_dry_run_shows_what_would_be_signed_and_writes_nothing(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 2)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    _drop_readings(store, fleet[1].key.meter_id, 96)
    dry = bill_on_disk(deployment, store, "example-tou", "--dry-run")
    assert f"{bill_id_for(fleet[0].customer_id, PERIOD)} 96/96 0.00%" in dry
    assert f"refused {fleet[1].customer_id}: no readings" in dry
    assert "1 bills would be signed, 1 refused" in dry
    assert "dry run: nothing was signed or written" in dry
    assert _log_size(store) == 0
    real = bill_on_disk(deployment, store, "example-tou")
    assert "1 bills signed" in real
    # Billed already: refused by name (bills are never rewritten), and the run exits 1.
    bill_id = bill_id_for(fleet[0].customer_id, PERIOD)
    for options in (["--dry-run"], []):  # a dry run looks first; a real one is refused on record
        again = bill_on_disk(deployment, store, "example-tou", *options, code=1)
        assert f"refused {fleet[0].customer_id}: bill {bill_id} exists already" in again
        assert f"meterseal rebill {bill_id} --reason" in again
        assert "0 bills" in again
    assert _log_size(store) == 1


def test_ids_printed_by_bill_list_and_readings_feed_export(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 3)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    ids = sorted(bill_id_for(m.customer_id, PERIOD) for m in fleet)
    billed = bill_on_disk(deployment, store, "example-tou", "--show", "1")
    assert ids[0] in billed
    assert ids[1] not in billed
    assert "… and 2 more (--show N lists more)" in billed
    assert "list their ids: meterseal bills list --from 2026-10-30 --days 1" in billed
    listed = run("bills", "list", "--from", "2026-10-30", "--days", "1", "--store", store)
    for bill_id in ids:
        assert f"{bill_id} bill 2026-10-30 to 2026-10-31" in listed
    assert run("bills", "list", "--ids", "--store", store).split() == ids
    mistyped = fleet[0].customer_id + "X"
    assert f"no customer '{mistyped}'" in run(
        "bills", "list", "--customer", mistyped, "--store", store, code=2
    )
    unbilled = run("bills", "list", "--customer", fleet[0].customer_id, "--from", "2026-11-01",
                   "--store", store)  # fmt: skip
    assert "0 bills" in unbilled  # a known customer with nothing billed is no error
    audited = run("audit", "-d", str(deployment), "--store", store, "--show", "3")
    for bill_id in ids:
        assert f"{bill_id} countersigned 96 96 0" in audited  # full ids, never cut
    readings = run("bills", "readings", ids[0], "--limit", "2", "--store", store)
    meter = fleet[0].key.meter_id
    assert f"{meter}:{FIRST} 2026-10-30 00:00" in readings
    assert "… 94 more" in readings
    assert f"export one: meterseal export-bill '{ids[0]}' --reading {meter}:{FIRST}" in readings
    out = tmp_path / "out"
    by_customer = run(
        "export-bill", "--customer", fleet[0].customer_id, "--from", "2026-10-30", "--days", "1",
        "--reading", f"{meter}:{FIRST + 5}", "--out", str(out), "--store", store,
    )  # fmt: skip
    assert f"(reading {meter}:{FIRST + 5})" in by_customer
    assert "check it: meterseal verify-bill" in by_customer
    none = run("export-bill", "--out", str(out), "--store", store, code=2)
    assert "--customer" in none


def test_the_audit_refuses_a_false_estimated_flag(month: Month) -> None:
    service = month.service()
    customer, meters = sorted(month.bills.customers().items())[0]
    computed = service.compute(customer, meters, month.period, month.tariff)
    assert computed.bill.estimated_over_limit is None  # a full day: nothing estimated
    false_flag = dataclasses.replace(computed.bill, estimated_over_limit=Decimal(5))
    lying = computed._replace(bill=false_flag)
    service.sign_and_record(lying)
    report = month.auditor().audit(computed.bill.bill_id).report
    assert [f.field for f in report.findings] == ["estimated_over_limit"]


def test_a_format_1_bill_still_decodes(month: Month) -> None:
    from meterseal.crypto import cose

    customer, meters = sorted(month.bills.customers().items())[0]
    bill = month.service().compute(customer, meters, month.period, month.tariff).bill
    old = {k: v for k, v in cose.loads_strict(bill.to_cbor()).items()}
    for key in ("kind", "refers", "reason", "estimated_over_limit"):
        del old[key]
    old["format"] = 1
    assert Bill.from_cbor(cose.dumps(old)) == bill
    with pytest.raises(Exception, match="unexpected or missing"):
        Bill.from_cbor(cose.dumps({**old, "format": 2}))


def _bill(statements: list[tuple[int, int]]) -> Bill:
    meters = tuple(
        MeterStatement(f"M{i}", expected, received, 0, 0, (), (), ())
        for i, (expected, received) in enumerate(statements)
    )
    packets = sum(received for _, received in statements)
    charges = Charges("EUR", (ChargeLine("energy", 0, Decimal(0), Decimal(0)),), Decimal(0))
    return Bill(
        "C/0-1", "C", PERIOD, int(NOW.timestamp()), "t", 1, b"\0" * 32, "linear", meters,
        charges, packets, b"\0" * 32, b"\0" * 32,
    )  # fmt: skip


@given(
    st.lists(
        st.integers(1, 3000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
        min_size=1,
        max_size=3,
    ),
    st.decimals(0, 100, places=2),
    st.booleans(),
)
def test_screen_refuses_exactly_above_the_limit(
    statements: list[tuple[int, int]], limit: Decimal, allow: bool
) -> None:
    bill = _bill(statements)
    expected = sum(e for e, _ in statements)
    share = Fraction(sum(e - r for e, r in statements), expected)
    policy = EstimationPolicy(limit, allow)
    if bill.packets == 0:
        with pytest.raises(BillRefused, match="no readings"):
            screen(bill, policy)
    elif share * 100 > Fraction(limit) and not allow:
        with pytest.raises(BillRefused, match="--allow-estimated"):
            screen(bill, policy)
    else:
        flagged = screen(bill, policy)
        over = share * 100 > Fraction(limit)
        assert flagged.estimated_over_limit == (limit if over else None)
        assert dataclasses.replace(flagged, estimated_over_limit=None) == bill


def test_a_billing_service_refuses_a_customer_billed_already(month: Month) -> None:
    service: BillingService = month.service()
    customer, meters = sorted(month.bills.customers().items())[0]
    service.bill_customer(customer, meters, month.period, month.tariff)
    with pytest.raises(BillRefused, match="never rewritten"):
        service.compute(customer, meters, month.period, month.tariff)
