"""A bill's document (HTML and PDF) shows the signed figures, from signed bytes only."""

from __future__ import annotations

import dataclasses
import io

import pytest
from markupsafe import escape
from pypdf import PdfReader

from meterseal.billing.bill import (
    manifest_from_cbor,
    parse_signed_bill,
    sign_bill,
    verify_signed_bill,
)
from meterseal.billing.completeness import estimation_rule
from meterseal.billing.compute import BillPacket, BillRequest, compute_bill
from meterseal.billing.document import (
    AuditInput,
    AuditState,
    BillDocument,
    DocumentError,
    bill_document,
    verification_code,
)
from meterseal.billing.document_chart import ESTIMATED, MEASURED, daily_chart, to_svg
from meterseal.billing.document_html import render_html
from meterseal.billing.document_pdf import render_pdf
from meterseal.billing.document_view import document_view, kwh
from meterseal.billing.policy import EstimationPolicy
from meterseal.billing.service import BillingService
from meterseal.billing.unsigned import UnsignedReading
from meterseal.crypto.keys import kid_of, public_bytes
from tests.billing.conftest import Month
from tests.conftest import NOW


def _bill(month: Month, customer: str) -> str:
    meters = month.customer(customer)
    return month.service().bill_customer(customer, meters, month.period, month.tariff).bill.bill_id


def _document(month: Month, bill_id: str, audit: AuditInput | None = None) -> BillDocument:
    """As `bill-doc` makes it: the stored bill, its manifest's rows, the meter directory."""
    stored = month.bills.bill(bill_id)
    assert stored is not None
    keys = [(e.meter_id, e.counter) for e in manifest_from_cbor(stored.manifest)]
    return bill_document(
        stored.signed_bill,
        stored.manifest,
        month.bills.packets_by_key(keys),
        billing_key=month.billing_key.public_key(),
        meters=month.bills.meter_directory(month.ca_cert),
        audit=audit or AuditInput(),
    )


def _pdf_text(data: bytes) -> str:
    """The PDF's text read back, runs of white space (line breaks of wrapped text) as one."""
    pages = PdfReader(io.BytesIO(data)).pages
    return " ".join(" ".join(page.extract_text() for page in pages).split())


def _with_gaps(month: Month) -> str:
    """The first customer's bill, three of its 96 readings deleted before billing."""
    month.execute(
        "DELETE FROM signed_originals WHERE meter_id = :m AND timestamp >= :a AND timestamp < :b",
        m=month.fleet[0].key.meter_id,
        a=month.period.start + 900,
        b=month.period.start + 4 * 900,
    )
    return _bill(month, month.fleet[0].customer_id)


def test_the_pages_print_the_signed_figures(month: Month) -> None:
    bill_id = _with_gaps(month)
    doc = _document(month, bill_id)
    stored = month.bills.bill(bill_id)
    assert stored is not None
    bill = verify_signed_bill(stored.signed_bill, month.billing_key.public_key())
    assert doc.bill == bill
    assert sum(d.total_wh for d in doc.days) == sum(map(sum, doc.hours)) == bill.energy_wh
    assert sum(d.estimated_wh for d in doc.days) == bill.estimated_wh > 0
    assert sum(e for _, e in doc.hours) == bill.estimated_wh
    # Deleted: slots 1, 2, 3 (00:15 to 01:00): hour 0 alone has estimated energy.
    assert [h for h, (_, e) in enumerate(doc.hours) if e] == [0]
    assert doc.code == verification_code(stored.signed_bill)
    assert doc.audit is AuditState.NOT_AUDITED
    view = document_view(doc)
    page = render_html(view)
    text = _pdf_text(render_pdf(view, issued_at=bill.issued_at))
    expected = [
        bill.customer_id,
        bill.bill_id,
        f"{bill.charges.total} {bill.charges.currency}",
        f"{kwh(bill.energy_wh)}",
        doc.code,
        "93 of 96",
        f"{kwh(bill.estimated_wh)} kWh of {kwh(bill.energy_wh)} kWh",
        "3 intervals had no reading",
        AuditState.NOT_AUDITED.value,
        bill.merkle_root.hex(),
    ]
    for line in bill.charges.lines:
        expected += [line.label, f"{line.amount} {bill.charges.currency}"]
        if line.energy_wh:
            expected.append(kwh(line.energy_wh))
    for m in bill.meters:
        expected += [m.meter_id, kwh(m.measured_wh), kwh(m.estimated_wh)]
    for value in expected:
        assert value in text, value
        assert str(escape(value)) in page, value
    assert f'fill="{ESTIMATED}"' in page  # the estimated days are drawn, and named
    assert "estimated (gaps filled)" in text


def test_a_stored_column_changed_after_billing_does_not_reach_the_page(month: Month) -> None:
    customer = month.fleet[0].customer_id
    bill_id = _bill(month, customer)
    month.execute(
        "UPDATE signed_originals SET energy_wh = energy_wh + 50000 WHERE meter_id = :m",
        m=month.fleet[0].key.meter_id,
    )
    doc = _document(month, bill_id)
    assert sum(d.total_wh for d in doc.days) == doc.bill.energy_wh  # the signed values
    assert doc.bill.estimated_wh == 0
    assert doc.days[0].estimated_wh == 0


def test_a_reading_replaced_or_gone_refuses_the_document(month: Month) -> None:
    customer = month.fleet[0].customer_id
    bill_id = _bill(month, customer)
    meter = month.fleet[0].key.meter_id
    first = month.period.start // 900
    month.execute(
        "UPDATE signed_originals SET signed_original = (SELECT signed_original FROM "
        "signed_originals WHERE meter_id = :m AND counter = :other) "
        "WHERE meter_id = :m AND counter = :c",
        m=meter,
        c=first + 5,
        other=first + 6,
    )
    with pytest.raises(DocumentError, match=f"stored reading {meter} #{first + 5} is not the one"):
        _document(month, bill_id)
    month.execute(
        "DELETE FROM signed_originals WHERE meter_id = :m AND counter = :c", m=meter, c=first + 5
    )
    with pytest.raises(DocumentError, match=f"billed reading {meter} #{first + 5} is not in"):
        _document(month, bill_id)


def test_the_audit_state_is_the_authority_s(month: Month) -> None:
    customer = month.fleet[1].customer_id  # two meters
    bill_id = _bill(month, customer)
    outcome = month.auditor().audit(bill_id)
    assert outcome.countersigned is not None
    authority = month.authority_key.public_key()
    kid = kid_of(public_bytes(authority))
    checked = _document(month, bill_id, AuditInput(outcome.countersigned, True, authority, kid))
    assert checked.audit is AuditState.COUNTERSIGNED
    assert len(checked.bill.meters) == 2
    assert checked.code == verification_code(outcome.countersigned)  # one code, either file
    unchecked = _document(month, bill_id, AuditInput(outcome.countersigned, True))
    assert unchecked.audit is AuditState.COUNTERSIGNED_UNCHECKED
    assert _document(month, bill_id, AuditInput(None, False)).audit is AuditState.DISCREPANCIES
    other = month.billing_key.public_key()  # not the authority's
    with pytest.raises(DocumentError, match="countersignature does not hold"):
        _document(month, bill_id, AuditInput(outcome.countersigned, True, other, kid))


def test_a_customer_name_is_text_on_the_page_never_markup(month: Month) -> None:
    doc = _document(month, _bill(month, month.fleet[0].customer_id))
    name = "<script>alert('bill')</script> & Zoë Łukasz"
    shown = dataclasses.replace(doc, bill=dataclasses.replace(doc.bill, customer_id=name))
    view = document_view(shown)
    page = render_html(view)
    assert "<script" not in page
    assert str(escape(name)) in page  # Jinja2's escaping: &lt;script&gt;alert(&#39;bill&#39;)…
    text = _pdf_text(render_pdf(view, issued_at=doc.bill.issued_at))
    assert "<script>alert('bill')</script> & Zoë ?ukasz" in text  # Latin-1 fonts: Ł as ?


def test_the_daily_chart_draws_the_days_it_is_given() -> None:
    import datetime as dt

    from meterseal.billing.document import DayUse

    days = [DayUse(dt.date(2026, 10, d), 1000 * d, 500 if d == 3 else 0) for d in range(1, 6)]
    chart = daily_chart(days)
    measured = [b for b in chart.boxes if b.colour == MEASURED]
    estimated = [b for b in chart.boxes if b.colour == ESTIMATED]
    assert len(measured) == 5
    assert len(estimated) == 1
    heights = [b.height for b in measured]
    assert heights == sorted(heights)
    assert heights[4] / heights[0] == pytest.approx(5)
    assert estimated[0].height / heights[0] == pytest.approx(0.5)
    assert estimated[0].y + estimated[0].height == pytest.approx(measured[2].y)  # stacked
    svg = to_svg(chart)
    assert svg.count("<rect") == 6 + len(chart.legend)
    assert ">estimated (gaps filled)<" in svg


def test_the_code_is_the_signed_payload_s(month: Month) -> None:
    stored = month.bills.bill(_bill(month, month.fleet[0].customer_id))
    assert stored is not None
    code = verification_code(stored.signed_bill)
    assert len(code) == 24
    assert code.count("-") == 4
    bill, _ = parse_signed_bill(stored.signed_bill)
    assert code == verification_code(stored.signed_bill)
    other = month.bills.bill(_bill(month, month.fleet[1].customer_id))
    assert other is not None
    assert verification_code(other.signed_bill) != code
    assert (
        bill.bill_id
        != verify_signed_bill(other.signed_bill, month.billing_key.public_key()).bill_id
    )


def test_a_bill_over_the_estimated_limit_says_so_on_the_page(month: Month) -> None:
    meter = month.fleet[0].key.meter_id
    month.execute(
        "DELETE FROM signed_originals WHERE meter_id = :m AND timestamp < :b",
        m=meter,
        b=month.period.start + 20 * 900,  # 20 of 96 intervals: 20.83 %, over the 10 % limit
    )
    allowed = EstimationPolicy(allow_estimated=True)
    service = BillingService(
        month.bills, month.billing_key, clock=lambda: NOW.timestamp(), policy=allowed
    )
    customer = month.fleet[0].customer_id
    billed = service.bill_customer(customer, [meter], month.period, month.tariff).bill
    assert billed.estimated_over_limit is not None
    view = document_view(_document(month, billed.bill_id))
    flag = "20.83 % of the period's intervals are estimated, above the 10 % limit"
    assert flag in view.estimated_note
    assert flag in _pdf_text(render_pdf(view, issued_at=billed.issued_at))
    assert str(escape(flag)) in render_html(view)


def test_unsigned_imports_on_a_bill_are_counted_as_such(month: Month) -> None:
    meter, customer = month.fleet[0].key.meter_id, month.fleet[0].customer_id
    packets = month.bills.packets([meter], month.period.start, month.period.end)
    # Two slots billed from UNSIGNED imported records instead of the meter's readings.
    imported = [UnsignedReading(meter, p.timestamp, 900, p.energy_wh + 7) for p in packets[:2]]
    packets = [
        *(BillPacket(meter, r.counter, r.timestamp, r.energy_wh, r.to_cbor()) for r in imported),
        *packets[2:],
    ]
    request = BillRequest(
        f"{customer}/imported", customer, (meter,), month.period, month.tariff,
        estimation_rule("linear"), int(NOW.timestamp()),
    )  # fmt: skip
    computed = compute_bill(request, packets)
    key = month.billing_key
    signed = sign_bill(computed.bill, key, kid_of(public_bytes(key.public_key())))
    directory = month.bills.meter_directory(month.ca_cert)

    def document(rows: list[BillPacket]) -> BillDocument:
        return bill_document(
            signed, computed.manifest_cbor(), rows, billing_key=key.public_key(),
            meters=directory, audit=AuditInput(),
        )  # fmt: skip

    doc = document(packets)
    assert (doc.unsigned, doc.unsigned_wh) == (2, sum(r.energy_wh for r in imported))
    assert sum(d.total_wh for d in doc.days) == doc.bill.energy_wh
    view = document_view(doc)
    assert ("Unsigned readings", f"2 imported ({kwh(doc.unsigned_wh)} kWh)") in view.facts
    assert "are UNSIGNED imports: no meter signed them" in view.estimated_note
    # An imported value changed after billing: its record no longer hashes to the leaf.
    changed = UnsignedReading(meter, imported[0].timestamp, 900, imported[0].energy_wh + 1)
    rows = [BillPacket(meter, changed.counter, changed.timestamp, 0, changed.to_cbor())]
    with pytest.raises(DocumentError, match=f"stored reading {meter} #{changed.counter} is not"):
        document(rows + packets[1:])
