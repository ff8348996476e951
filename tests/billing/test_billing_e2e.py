"""Bill a stored month, audit it, prove a reading: and catch every tamper the issue lists."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from meterseal.billing.audit import FindingKind
from meterseal.billing.bill import manifest_from_cbor, verify_signed_bill
from meterseal.billing.billlog import BILL_LOG_HEAD
from meterseal.billing.proofs import (
    ProofNotFound,
    ReadingProof,
    ReadingProofError,
    make_reading_proof,
    verify_reading,
)
from meterseal.billing.service import BillingError
from meterseal.billing.tariff import TariffBook
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.errors import StorageError
from meterseal.transparency.merkle import MerkleTree, verify_consistency
from tests.billing.conftest import Month


def _bill_all(month: Month) -> dict[str, str]:
    service = month.service()
    out = {}
    for customer, meters in sorted(month.bills.customers().items()):
        out[customer] = service.bill_customer(
            customer, meters, month.period, month.tariff
        ).bill.bill_id
    return out


def test_a_complete_month_is_billed_audited_and_countersigned(month: Month) -> None:
    billed = _bill_all(month)
    assert len(billed) == 2
    two_meters = month.fleet[1].customer_id
    stored = month.bills.bill(billed[two_meters])
    assert stored is not None
    bill = verify_signed_bill(stored.signed_bill, month.billing_key.public_key())
    assert [m.expected for m in bill.meters] == [96, 96]
    assert all(m.received == 96 and not m.gaps and not m.estimated_wh for m in bill.meters)
    assert bill.packets == 192
    assert len(manifest_from_cbor(stored.manifest)) == 192
    assert bill.charges.total == sum(line.amount for line in bill.charges.lines)
    auditor = month.auditor()
    for bill_id in billed.values():
        outcome = auditor.audit(bill_id)
        assert outcome.report.clean, outcome.report.findings
        assert outcome.countersigned is not None
        assert outcome.report.signatures_verified >= 96
    assert [r.clean for r in month.bills.reports()] == [True, True]


def test_a_bill_is_never_rewritten(month: Month) -> None:
    _bill_all(month)
    customer, meters = next(iter(month.bills.customers().items()))
    with pytest.raises(BillingError, match="never rewritten"):
        month.service().bill_customer(customer, meters, month.period, month.tariff)


def test_gaps_are_estimated_and_named_on_the_bill(month: Month) -> None:
    meter = month.fleet[0].key.meter_id
    month.execute(
        "DELETE FROM signed_originals WHERE meter_id = :m AND timestamp >= :a AND timestamp < :b",
        m=meter,
        a=month.period.start + 900,
        b=month.period.start + 4 * 900,
    )
    result = month.service().bill_customer(
        month.fleet[0].customer_id, [meter], month.period, month.tariff
    )
    (statement,) = result.bill.meters
    assert statement.received == 93
    assert statement.gaps == ((month.period.start + 900, month.period.start + 3600),)
    assert statement.estimated_wh > 0
    assert result.bill.estimation == "linear"
    assert month.auditor().audit(result.bill.bill_id).report.clean


def test_the_bill_log_grows_consistently_with_signed_heads(month: Month) -> None:
    _bill_all(month)
    heads = [month.bills.log_head(size) for size in (1, 2)]
    assert all(h is not None for h in heads)
    public = month.billing_key.public_key()
    old, new = (BILL_LOG_HEAD.verified(h.signed, public) for h in heads if h is not None)
    assert [h.head for h in heads if h is not None] == [old, new]
    tree = MerkleTree(month.bills.log_leaves())
    assert tree.root == new.root
    verify_consistency(1, 2, old.root, new.root, tree.consistency_proof(1))


def test_a_customer_checks_a_reading_with_public_material_only(month: Month) -> None:
    billed = _bill_all(month)
    bill_id = billed[month.fleet[0].customer_id]
    outcome = month.auditor().audit(bill_id)
    stored = month.bills.bill(bill_id)
    assert stored is not None
    assert outcome.countersigned is not None
    meter = month.fleet[0]
    (packet,) = month.bills.packets_by_key([(meter.key.meter_id, stored_counter(month, 5))])
    proof = make_reading_proof(
        bill_id,
        manifest_from_cbor(stored.manifest),
        packet.meter_id,
        packet.counter,
        packet.signed_original,
        meter.certificate,
        meter.key.suite.name,
    )
    proof = ReadingProof.from_cbor(proof.to_cbor())
    with pytest.raises(ProofNotFound, match="is not on bill"):
        make_reading_proof(
            bill_id,
            manifest_from_cbor(stored.manifest),
            packet.meter_id,
            -1,
            packet.signed_original,
            meter.certificate,
            meter.key.suite.name,
        )
    authority = month.authority_key.public_key()
    kid = kid_of(public_bytes(authority))
    verify = functools.partial(
        verify_reading,
        ca_certificate=month.ca_cert,
        billing_key=month.billing_key.public_key(),
        authority_key=authority,
        authority_kid=kid,
    )
    checked = verify(outcome.countersigned, proof)
    assert checked.reading.counter == packet.counter
    assert checked.index == 5
    with pytest.raises(ReadingProofError, match="countersignature"):
        verify(stored.signed_bill, proof)
    forged = dataclasses.replace(proof, index=6)
    with pytest.raises(ReadingProofError, match="inclusion"):
        verify(outcome.countersigned, forged)


def stored_counter(month: Month, slot: int) -> int:
    """The counter of the reading in `slot` (counters are interval numbers)."""
    return (month.period.start + slot * 900) // 900


# -- tampering: the operator changes the store; the audit must name what changed ---------------


ALTER_ENERGY = (
    "UPDATE signed_originals SET energy_wh = energy_wh + 500 WHERE meter_id = :m AND counter = :c"
)
# Copy a row under another meter id or counter, with its time moved by :dt seconds.
COPY_ROW = (
    "INSERT INTO signed_originals SELECT {meter}, counter + :shift, timestamp + :dt, interval, "
    "energy_wh, suite, {signed}, sent_at, received_at FROM signed_originals "
    "WHERE meter_id = :m AND counter = :c"
)


def _audit_after(
    month: Month, tamper: str, **params: object
) -> list[tuple[str, str | None, int | None, str | None]]:
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    month.execute(tamper, **params)
    report = month.auditor().audit(bill_id).report
    assert not report.clean
    return [(f.kind.value, f.meter_id, f.counter, f.field) for f in report.findings]


def _meter(month: Month) -> str:
    return month.fleet[0].key.meter_id


def test_altered_value_is_named(month: Month) -> None:
    c = stored_counter(month, 10)
    found = _audit_after(
        month,
        ALTER_ENERGY,
        m=_meter(month),
        c=c,
    )
    assert ("altered", _meter(month), c, "energy_wh") in found


def test_altered_value_before_billing_is_named_with_the_total(month: Month) -> None:
    c = stored_counter(month, 10)
    month.execute(
        ALTER_ENERGY,
        m=_meter(month),
        c=c,
    )
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    found = month.auditor().audit(bill_id).report.findings
    assert (FindingKind.ALTERED, c) in [(f.kind, f.counter) for f in found]
    assert {"total", f"meters[{_meter(month)}].measured_wh"} <= {f.field for f in found}


def test_dropped_reading_is_named(month: Month) -> None:
    c = stored_counter(month, 20)
    found = _audit_after(
        month,
        "DELETE FROM signed_originals WHERE meter_id = :m AND counter = :c",
        m=_meter(month),
        c=c,
    )
    assert ("missing", _meter(month), c, None) in found


def test_forged_reading_is_named(month: Month) -> None:
    c = stored_counter(month, 30)
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    (row,) = month.bills.packets_by_key([(_meter(month), c)])
    forged = row.signed_original[:-1] + bytes([row.signed_original[-1] ^ 1])
    month.execute(
        "UPDATE signed_originals SET signed_original = :s WHERE meter_id = :m AND counter = :c",
        s=forged,
        m=_meter(month),
        c=c,
    )
    found = [(f.kind.value, f.counter) for f in month.auditor().audit(bill_id).report.findings]
    assert ("forged", c) in found
    assert ("altered", c) in found


def test_injected_forged_reading_is_named(month: Month) -> None:
    c = stored_counter(month, 30)
    (row,) = month.bills.packets_by_key([(_meter(month), c)])
    forged = row.signed_original[:-1] + bytes([row.signed_original[-1] ^ 1])
    month.execute(
        COPY_ROW.format(meter="meter_id", signed=":s"),
        shift=1_000_000,
        dt=0,
        s=forged,
        m=_meter(month),
        c=c,
    )
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    found = [(f.kind.value, f.counter) for f in month.auditor().audit(bill_id).report.findings]
    assert ("forged", c + 1_000_000) in found
    assert ("extra", c + 1_000_000) in found


def test_reading_of_another_meter_is_named_foreign(month: Month) -> None:
    other = month.fleet[2].key.meter_id
    c = stored_counter(month, 40)
    month.execute(
        COPY_ROW.format(meter=":victim", signed="signed_original"),
        shift=1_000_000,
        dt=0,
        victim=_meter(month),
        m=other,
        c=c,
    )
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    found = [
        (f.kind.value, f.meter_id, f.counter)
        for f in month.auditor().audit(bill_id).report.findings
    ]
    assert ("foreign", _meter(month), c + 1_000_000) in found


def test_reordered_readings_are_named(month: Month) -> None:
    a, b = stored_counter(month, 50), stored_counter(month, 51)
    m = _meter(month)
    month.execute(
        "UPDATE signed_originals SET timestamp = "
        "CASE counter WHEN :a THEN timestamp + 900 ELSE timestamp - 900 END "
        "WHERE meter_id = :m AND counter IN (:a, :b)",
        a=a,
        b=b,
        m=m,
    )
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    found = [(f.kind.value, f.counter) for f in month.auditor().audit(bill_id).report.findings]
    assert ("reordered", a) in found
    assert ("reordered", b) in found
    assert {("altered", a), ("altered", b)} <= set(found)


def test_replayed_old_reading_is_named(month: Month) -> None:
    m = _meter(month)
    c = stored_counter(month, 60)
    # An old packet (here: slot 60's, stored again under a free counter and moved in time).
    month.execute(
        COPY_ROW.format(meter="meter_id", signed="signed_original"),
        shift=2_000_000,
        dt=900 * 5,
        m=m,
        c=c,
    )
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    found = [(f.kind.value, f.counter) for f in month.auditor().audit(bill_id).report.findings]
    assert ("replayed", c + 2_000_000) in found


def test_tariff_changed_after_signing_is_named(month: Month) -> None:
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    changed = dataclasses.replace(
        month.tariff, standing_charge_per_day=month.tariff.standing_charge_per_day + 1
    )
    month.execute(
        "UPDATE tariffs SET body = :b, digest = :d", b=changed.to_cbor(), d=changed.digest()
    )
    found = month.auditor().audit(bill_id).report.findings
    assert "tariff" in {f.field for f in found}
    assert "total" in {f.field for f in found}


def test_tariff_versions_are_append_only(month: Month) -> None:
    changed = dataclasses.replace(
        month.tariff, standing_charge_per_day=month.tariff.standing_charge_per_day + 1
    )
    with pytest.raises(StorageError, match="new version"):
        month.bills.add_tariff(changed, now=__import__("tests.conftest").conftest.NOW)
    assert len(TariffBook(month.bills.tariff_book())) == 1


def test_altered_bill_total_is_named(month: Month) -> None:
    bill_id = _bill_all(month)[month.fleet[0].customer_id]
    stored = month.bills.bill(bill_id)
    assert stored is not None
    total = f'"total": "{stored.total}"'
    # The total is CBOR text inside the signed payload: swap one digit.
    old = stored.total.encode()
    new = old[:-1] + (b"0" if old[-1:] != b"0" else b"1")
    assert stored.signed_bill.count(old) == 1, total
    month.execute(
        "UPDATE bills SET signed_bill = :s WHERE bill_id = :b",
        s=stored.signed_bill.replace(old, new),
        b=bill_id,
    )
    found = month.auditor().audit(bill_id).report.findings
    assert {"signature", "total"} <= {f.field for f in found}
