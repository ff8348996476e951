"""Corrections: a credit cancelling a bill and a rebill replacing it, appended, never rewritten."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from meterseal.bench.months import store_months
from meterseal.billing.bill import Bill, sign_bill
from meterseal.billing.billlog import bill_leaf
from meterseal.billing.corrections import credit_for, credit_problems, negated, rebill_problems
from meterseal.billing.ledger import ledger
from meterseal.billing.policy import BillRefused
from meterseal.billing.ports import StoredBill
from meterseal.billing.service import bill_id_for
from meterseal.billing.tariff import ChargeLine, Charges
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.storage import Store
from tests.billing.conftest import ANONYMIZATION_KEY, PERIOD, Month
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run
from tests.billing.test_refusals import FIRST, _bill

BASE = "CUST-MTR-000001/1793318400-1793404800"


def test_rebill_appends_a_credit_and_a_rebill_and_the_audit_knows_both(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    meter = fleet[0].key.meter_id
    base = bill_id_for(fleet[0].customer_id, PERIOD)
    with Store.open(store) as db, db.transaction() as connection:
        connection.execute(
            sa.text("DELETE FROM signed_originals WHERE counter % 20 = 0"),  # 5 readings late
        )
    bill_on_disk(deployment, store, "example-tou")
    with Store.open(store) as db:  # the late readings arrive
        store_months(db, fleet, PERIOD.start, PERIOD.slots, now=dt.datetime.now(dt.UTC),
                     anonymization_key=ANONYMIZATION_KEY, workers=1)  # fmt: skip
    found = run("audit", "-d", str(deployment), "--store", store, code=1)
    assert "a valid reading of the period is not on the bill" in found
    common = ["-d", str(deployment), "--store", store]
    dry = run("rebill", base, "--reason", "late readings", "--dry-run", *common)
    assert f"{base}/credit-1 credit -3.30 EUR cancels {base}" in dry
    assert f"{base}/rebill-1 rebill 3.32 EUR replaces {base} 96/96 0.00% 9.3" in dry
    assert "difference: 0.02 EUR" in dry
    assert "dry run: nothing was signed or written" in dry
    assert run("bills", "list", "--ids", "--store", store).split() == [base]
    done = run("rebill", base, "--reason", "late readings", *common)
    assert "appended to the bill log at 1 and 2" in done
    assert f"meterseal audit --bill '{base}/credit-1' --bill '{base}/rebill-1'" in done
    listed = run("bills", "list", "--store", store)
    assert (
        f"{base} bill 2026-10-30 to 2026-10-31 3.30 EUR superseded by {base}/rebill-1 0" in listed
    )
    assert f"{base}/credit-1 credit 2026-10-30 to 2026-10-31 -3.30 EUR cancels {base} 1" in listed
    assert f"{base}/rebill-1 rebill 2026-10-30 to 2026-10-31 3.32 EUR in force 2" in listed
    # The corrected bill's findings remain visible but no longer fail the audit.
    audited = run("audit", "-d", str(deployment), "--store", store)
    assert f"{base} discrepancies (corrected) 96 96" in audited
    assert f"{base}: 9 field, 5 missing (corrected)" in audited
    assert f"{base}/credit-1 countersigned 0 0 0" in audited
    assert f"{base}/rebill-1 countersigned 96 96 0" in audited
    assert "1 bills with discrepancies are corrected already" in audited
    # Only the bill in force can be corrected; the rebill can, in turn.
    refused = run("rebill", base, "--reason", "again", *common, code=2)
    assert f"is not in force (superseded by {base}/rebill-1); in force: {base}/rebill-1" in refused
    again = run("rebill", f"{base}/rebill-1", "--reason", "tariff fixed", *common)
    assert f"{base}/credit-2 credit -3.32 EUR cancels {base}/rebill-1" in again
    out = tmp_path / "out"
    stale = run("export-bill", base, "--out", str(out), "--store", store)
    assert f"not in force: superseded by {base}/rebill-1" in stale
    run("audit", "-d", str(deployment), "--store", store)
    fresh = run(
        "export-bill", "--customer", fleet[0].customer_id, "--from", "2026-10-30", "--days", "1",
        "--out", str(out), "--store", store,
    )  # fmt: skip
    assert "not in force" not in fresh
    stem = f"{base}/rebill-2".replace("/", "_")
    verified = run(
        "verify-bill", str(out / f"{stem}.bill.cose"),
        "--reading", str(out / f"{stem}.{meter}.{FIRST}.proof.cbor"),
        "--ca", str(deployment / "ca.cert.pem"),
        "--billing-key", str(deployment / "billing.pub.pem"),
        "--authority-key", str(deployment / "metrology.pub.pem"), "--store", store,
    )  # fmt: skip
    assert f"rebill: replaces bill {base}/rebill-1; reason: tariff fixed" in verified
    assert "in the bill log: in force" in verified


def _correct(month: Month) -> tuple[str, Bill, Bill]:
    service = month.service()
    customer, meters = sorted(month.bills.customers().items())[0]
    original = service.bill_customer(customer, meters, month.period, month.tariff).bill
    done = service.correct(original.bill_id, meters, month.tariff, "reading fixed")
    return original.bill_id, done.credit, done.rebill


def test_a_credit_and_its_rebill_are_appended_together_or_not_at_all(month: Month) -> None:
    service = month.service()
    customer, meters = sorted(month.bills.customers().items())[0]
    original = service.bill_customer(customer, meters, month.period, month.tariff)
    squatter = StoredBill(f"{original.bill.bill_id}/rebill-1", customer, 0, 1, 0, "EUR", "0",
                          b"x", b"", -1)  # fmt: skip
    month.bills.record_bills([(squatter, bill_leaf(b"x"))], service.log, lambda _s, _r: b"head")
    size = len(month.bills.log_leaves())
    with pytest.raises(BillRefused, match="exists already"):
        service.correct(original.bill.bill_id, meters, month.tariff, "late readings")
    assert len(month.bills.log_leaves()) == size
    assert month.bills.bill(f"{original.bill.bill_id}/credit-1") is None
    with pytest.raises(Exception, match="needs a --reason"):
        service.correct(original.bill.bill_id, meters, month.tariff, " ")


def test_a_customers_list_shows_each_entrys_kind_and_standing(month: Month) -> None:
    original_id, credit, rebill = _correct(month)
    listed = month.bills.bill_summaries(credit.customer_id)
    assert [(b.bill_id, b.kind, b.standing, b.total) for b in listed] == [
        (original_id, "bill", f"superseded by {rebill.bill_id}", str(-credit.charges.total)),
        (credit.bill_id, "credit", f"cancels {original_id}", str(credit.charges.total)),
        (rebill.bill_id, "rebill", "in force", str(rebill.charges.total)),
    ]


def test_the_audit_refuses_a_credit_that_is_not_the_bills_negation(month: Month) -> None:
    original_id, credit, _ = _correct(month)
    auditor = month.auditor()
    assert auditor.audit(credit.bill_id).report.clean
    # A credit that cancels less than the bill, signed by billing all the same.
    short = dataclasses.replace(
        credit,
        bill_id=f"{original_id}/credit-9",
        charges=Charges(credit.charges.currency, credit.charges.lines, Decimal("-0.01")),
    )
    _record(month, short, original_id)
    found = month.auditor().audit(short.bill_id).report.findings
    assert [f.field for f in found] == ["total"]


def test_the_audit_refuses_a_rebill_no_credit_backs(month: Month) -> None:
    original_id, _, rebill = _correct(month)
    assert month.auditor().audit(rebill.bill_id).report.clean
    stray = dataclasses.replace(rebill, bill_id=f"{original_id}/rebill-9", refers=(rebill.bill_id,
                                rebill.refers[1] if rebill.refers else b""))  # fmt: skip
    _record(month, stray, rebill.bill_id)
    found = month.auditor().audit(stray.bill_id).report.findings
    assert {f.field for f in found} == {"refers"}  # the leaf hash is not rebill-1's either
    assert any("no credit cancels" in f.detail for f in found)


def _record(month: Month, bill: Bill, manifest_of: str) -> None:
    """Sign `bill` with the billing key and append it with `manifest_of`'s manifest."""
    key = month.billing_key
    signed = sign_bill(bill, key, kid_of(public_bytes(key.public_key())))
    stored = month.bills.bill(manifest_of)
    assert stored is not None
    b, period = bill, bill.period
    row = StoredBill(b.bill_id, b.customer_id, period.start, period.end, b.issued_at, "EUR",
                     str(b.charges.total), signed, stored.manifest, -1)  # fmt: skip
    service = month.service()
    month.bills.record_bills([(row, bill_leaf(signed))], service.log, lambda _s, _r: b"head")


amounts = st.decimals(-10_000, 10_000, places=2)


@given(
    st.lists(st.tuples(st.integers(0, 10**6), amounts), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 10**6), amounts), min_size=1, max_size=5),
)
def test_credit_and_rebill_net_to_the_difference(
    first: list[tuple[int, Decimal]], second: list[tuple[int, Decimal]]
) -> None:
    def priced(bill_id: str, lines: list[tuple[int, Decimal]]) -> Bill:
        charge = tuple(ChargeLine(f"l{i}", wh, Decimal(1), a) for i, (wh, a) in enumerate(lines))
        total = sum((a for _, a in lines), Decimal(0))
        return dataclasses.replace(_bill([(96, 90)]), bill_id=bill_id,
                                   charges=Charges("EUR", charge, total))  # fmt: skip

    original = priced(BASE, first)
    signed = original.to_cbor()
    credit = credit_for(original, signed, f"{BASE}/credit-1", 5, "why")
    rebill = dataclasses.replace(
        priced(f"{BASE}/rebill-1", second), kind="rebill", refers=credit.refers, reason="why"
    )
    assert credit.charges.total == -original.charges.total
    assert original.charges.total + credit.charges.total + rebill.charges.total == (
        rebill.charges.total
    )
    assert credit_problems(credit, (original, signed)) == []
    assert rebill_problems(rebill, (original, signed), [original, credit, rebill]) == []
    assert rebill_problems(rebill, (original, signed), [original, rebill]) != []
    assert Bill.from_cbor(credit.to_cbor()) == credit  # the credit survives its encoding
    assert negated(negated(original.charges)) == original.charges
    entries = ledger([(0, original), (1, credit), (2, rebill)])
    assert [e.in_force for e in entries] == [False, False, True]
    assert sum(e.bill.charges.total for e in entries) == rebill.charges.total
    # Any change of an amount is a credit that no longer cancels the bill.
    line = credit.charges.lines[0]
    off = dataclasses.replace(line, amount=line.amount + Decimal("0.01"))
    changed = Charges("EUR", (off, *credit.charges.lines[1:]), credit.charges.total)
    bad = dataclasses.replace(credit, charges=changed)
    assert [f for f, _ in credit_problems(bad, (original, signed))] == ["total"]
