"""The bill document's text, once, for the HTML and the PDF: the same rows in the same words.

Figures are printed exactly as signed: energy in kWh with three decimals (the bill counts
whole Wh), prices and amounts as the bill's decimal strings, no float on the way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from meterseal.billing.document import BillDocument
from meterseal.billing.document_chart import BarChart, daily_chart, hourly_chart
from meterseal.billing.policy import percent

STANDING = "standing charge"
TITLES = {
    "bill": "Electricity bill",
    "credit": "Credit note",
    "rebill": "Corrected electricity bill",
}


def kwh(wh: int) -> str:
    """Whole Wh as kWh with three decimals, exactly (1234567 -> '1,234.567')."""
    return f"{Decimal(wh).scaleb(-3):,.3f}"


def utc(timestamp: int) -> str:
    """A Unix time as 'YYYY-MM-DD HH:MM UTC'."""
    return f"{dt.datetime.fromtimestamp(timestamp, dt.UTC):%Y-%m-%d %H:%M} UTC"


def _dates(start: int, end: int) -> str:
    """A meter's dates with the customer: 'from 2026-10-12 00:00 UTC to 2026-10-31 00:00 UTC'."""
    return f"from {utc(start)} to {utc(end)}"


def _share(part: int, whole: int) -> str:
    return f"{Decimal(part * 100) / Decimal(whole):.1f} %" if whole else "0.0 %"


@dataclass(frozen=True, slots=True)
class ChargeRow:
    """One charge line as printed."""

    label: str
    energy: str  # kWh, or '' for the standing charge
    unit_price: str  # with its unit: '0.34 EUR/kWh', '0.4 EUR/day'
    amount: str


@dataclass(frozen=True, slots=True)
class MeterRow:
    """One meter's statement as printed."""

    meter: str
    readings: str  # received of expected
    measured: str
    estimated: str
    estimated_share: str
    gaps: str


@dataclass(frozen=True, slots=True)
class DocumentView:
    """Everything the bill document prints, formatted; HTML and PDF lay out the same view."""

    title: str
    facts: tuple[tuple[str, str], ...]  # (label, value): customer, bill, period, …
    meters: tuple[MeterRow, ...]
    charges: tuple[ChargeRow, ...]
    total: str
    energy: str
    estimated_note: str  # '' when nothing was estimated
    charts: tuple[BarChart, ...]
    code: str
    qr_text: str
    audit: str
    checks: tuple[str, ...]  # how a customer checks the code, step by step
    evidence: tuple[tuple[str, str], ...]


def document_view(doc: BillDocument) -> DocumentView:
    """The printed view of a bill document."""
    b = doc.bill
    currency = b.charges.currency
    received, expected = doc.readings
    facts: list[tuple[str, str]] = [("Customer", b.customer_id), ("Bill", b.bill_id)]
    if b.refers is not None:
        facts.append(("Cancels" if b.kind == "credit" else "Replaces", b.refers[0]))
    if b.reason:
        facts.append(("Reason", b.reason))
    if doc.standing is not None:
        facts.append(("Standing", doc.standing))
    if doc.unsigned:
        facts.append(
            ("Unsigned readings", f"{doc.unsigned:,} imported ({kwh(doc.unsigned_wh)} kWh)")
        )
    for m in b.meters:  # a meter the customer had for part of the period only
        if m.window is not None:
            facts.append((f"Meter {m.meter_id}", _dates(*m.window)))
    facts += [
        ("Period", f"{utc(b.period.start)} to {utc(b.period.end)}"),
        ("Issued", utc(b.issued_at)),
        ("Tariff", f"{b.tariff_id}, version {b.tariff_version}"),
        ("Readings", f"{received:,} of {expected:,} intervals received"),
        ("Gaps estimated by", b.estimation),
    ]
    meters = tuple(
        MeterRow(
            m.meter_id,
            f"{m.received:,} of {m.expected:,}",
            kwh(m.measured_wh),
            kwh(m.estimated_wh),
            _share(m.estimated_wh, m.measured_wh + m.estimated_wh),
            f"{len(m.gaps)}",
        )
        for m in b.meters
    )
    charges = tuple(
        ChargeRow(
            line.label,
            "" if line.label.startswith(STANDING) else kwh(line.energy_wh),
            f"{line.unit_price} {currency}/{'day' if line.label.startswith(STANDING) else 'kWh'}",
            f"{line.amount} {currency}",
        )
        for line in b.charges.lines
    )
    note = ""
    if b.estimated_wh:
        missing = expected - received
        note = (
            f"{kwh(b.estimated_wh)} kWh of {kwh(b.energy_wh)} kWh "
            f"({_share(b.estimated_wh, b.energy_wh)}) is estimated: {missing:,} intervals had "
            f"no reading and were filled by the '{b.estimation}' rule, priced like measured "
            "energy in their interval. Estimated energy is shown in orange in the charts."
        )
    if doc.unsigned:
        note += (
            f" {doc.unsigned:,} readings ({kwh(doc.unsigned_wh)} kWh) are UNSIGNED imports: no "
            "meter signed them; their values are as imported, committed by the bill's signature."
        )
    if b.estimated_over_limit is not None:
        note += (
            f" {percent(b)} % of the period's intervals are estimated, above the "
            f"{b.estimated_over_limit} % limit: billed on the operator's explicit allowance, "
            "as the signed bill states."
        )
    file_name = f"{b.bill_id.replace('/', '_')}.bill.cose"
    checks = (
        f"Get the signed bill: meterseal export-bill '{b.bill_id}'",
        f"Check it: meterseal verify-bill {file_name}",
        f"verify-bill checks the signatures and prints the verification code: {doc.code}",
    )
    evidence = (
        ("Readings committed", f"{b.packets:,}"),
        ("Merkle root", b.merkle_root.hex()),
        ("Hash chain head", b.chain_head.hex()),
        ("Tariff digest", b.tariff_digest.hex()),
    )
    return DocumentView(
        title=f"{TITLES.get(b.kind, 'Bill')} {b.bill_id}",
        facts=tuple(facts),
        meters=meters,
        charges=charges,
        total=f"{b.charges.total} {currency}",
        energy=f"{kwh(b.energy_wh)} kWh",
        estimated_note=note.strip(),
        charts=(daily_chart(doc.days), hourly_chart(doc.hours)) if doc.days else (),
        code=doc.code,
        qr_text=f"meterseal bill {b.bill_id} code {doc.code}",
        audit=doc.audit.value,
        checks=checks,
        evidence=evidence,
    )
