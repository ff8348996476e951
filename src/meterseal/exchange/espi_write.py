"""Green Button (ESPI) Atom feeds out (sans-IO): a customer's readings and bills for an MDM.

One feed per customer: a UsagePoint per meter (its id is the meter id); under each, the
meter-signed readings and the UNSIGNED imports as two MeterReadings titled so, in
IntervalBlocks of one UTC day; one ReadingType for all (Wh, delivered, interval data); each bill
as a UsageSummary under its first meter's UsagePoint (billing period, total in hundred-
thousandths of the currency, energy in Wh, each charge line as a LineItem). `espi.parse_espi`
reads the readings back, `usage_summaries` the bills.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as Tree  # writing only; parsing goes through defusedxml
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import defusedxml.ElementTree as SafeTree

from meterseal.billing.bill import Bill
from meterseal.billing.unsigned import UnsignedReading
from meterseal.exchange.csv_readings import ImportFormatError
from meterseal.exchange.espi import ATOM, DELTA_DATA, ELECTRICITY, ESPI, FORWARD, UOM_WH

DAY = 86_400
READING_TYPE = "ReadingType/1"
QUALITY_CODES = {"measured": 0, "estimated": 8, "substituted": 7}  # inverse of espi.quality_of
# ISO 4217 numeric codes ESPI's `currency` takes, for the currencies tariffs use.
CURRENCIES = {"EUR": 978, "USD": 840, "GBP": 826, "CHF": 756, "CAD": 124, "BRL": 986, "AUD": 36}
MONEY_SCALE = 100_000  # ESPI amounts are in hundred-thousandths of the currency


class SignedInterval(NamedTuple):
    """A meter-signed reading as exported: meter, start, length and Wh."""

    meter_id: str
    timestamp: int
    interval: int
    energy_wh: int


class UsageSummary(NamedTuple):
    """A bill as an ESPI UsageSummary carries it (read back by `usage_summaries`)."""

    usage_point: str
    title: str
    start: int
    duration: int
    bill_last_period: int  # hundred-thousandths of the currency
    currency: int
    energy_wh: int
    lines: tuple[tuple[str, int], ...]  # (note, amount in hundred-thousandths)


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Feed:
    def __init__(self, customer_id: str, now: int) -> None:
        Tree.register_namespace("", ATOM[1:-1])
        Tree.register_namespace("espi", ESPI[1:-1])
        self.base = f"RetailCustomer/{customer_id}"
        self.now = _iso(now)
        self.root = Tree.Element(f"{ATOM}feed")
        Tree.SubElement(self.root, f"{ATOM}id").text = f"urn:meterseal:{self.base}"
        Tree.SubElement(self.root, f"{ATOM}title").text = f"meterseal: customer {customer_id}"
        Tree.SubElement(self.root, f"{ATOM}updated").text = self.now

    def entry(self, href: str, title: str, *, related: Sequence[str] = ()) -> Any:
        """An entry at `href`; returns its content element to put one resource in."""
        entry = Tree.SubElement(self.root, f"{ATOM}entry")
        Tree.SubElement(entry, f"{ATOM}id").text = f"urn:meterseal:{href}"
        Tree.SubElement(entry, f"{ATOM}link", rel="self", href=href)
        Tree.SubElement(entry, f"{ATOM}link", rel="up", href=href.rpartition("/")[0])
        for other in related:
            Tree.SubElement(entry, f"{ATOM}link", rel="related", href=other)
        Tree.SubElement(entry, f"{ATOM}title").text = title
        content = Tree.SubElement(entry, f"{ATOM}content")
        Tree.SubElement(entry, f"{ATOM}published").text = self.now
        Tree.SubElement(entry, f"{ATOM}updated").text = self.now
        return content


def _sub(parent: Any, name: str, value: object | None = None) -> Any:
    element = Tree.SubElement(parent, f"{ESPI}{name}")
    if value is not None:
        element.text = str(value)
    return element


def espi_feed(
    customer_id: str,
    meter_ids: Sequence[str],
    signed: Iterable[SignedInterval],
    unsigned: Iterable[UnsignedReading],
    bills: Iterable[Bill],
    *,
    now: int,
) -> bytes:
    """The customer's ESPI feed (UTF-8 XML) of the readings and bills given."""
    feed = _Feed(customer_id, now)
    kind = _sub(feed.entry(READING_TYPE, "Energy delivered (Wh), interval data"), "ReadingType")
    for name, value in (("accumulationBehaviour", DELTA_DATA), ("commodity", 1),
                        ("dataQualifier", 12), ("flowDirection", FORWARD), ("kind", 12),
                        ("phase", 769), ("powerOfTenMultiplier", 0), ("uom", UOM_WH)):  # fmt: skip
        _sub(kind, name, value)
    series: dict[tuple[str, str], list[tuple[int, int, int, int | None]]] = defaultdict(list)
    for s in signed:
        series[(s.meter_id, "signed")].append((s.timestamp, s.interval, s.energy_wh, None))
    for u in unsigned:
        quality = QUALITY_CODES[u.quality]
        series[(u.meter_id, "unsigned")].append((u.timestamp, u.interval, u.energy_wh, quality))
    for meter_id in meter_ids:
        point = f"{feed.base}/UsagePoint/{meter_id}"
        up = _sub(feed.entry(point, meter_id), "UsagePoint")
        _sub(_sub(up, "ServiceCategory"), "kind", ELECTRICITY)
        for provenance, title in (("signed", "meter-signed readings, signatures verified"),
                                  ("unsigned", "UNSIGNED imported readings")):  # fmt: skip
            rows = sorted(series.get((meter_id, provenance), []))
            if rows:
                _meter_reading(feed, f"{point}/MeterReading/{provenance}", title, rows)
    for n, bill in enumerate(bills, 1):
        _summary(feed, f"{feed.base}/UsagePoint/{bill.meters[0].meter_id}", n, bill)
    Tree.indent(feed.root)
    data: bytes = Tree.tostring(feed.root, encoding="utf-8", xml_declaration=True)
    return data


def _meter_reading(
    feed: _Feed, href: str, title: str, rows: list[tuple[int, int, int, int | None]]
) -> None:
    _sub(feed.entry(href, title, related=[READING_TYPE]), "MeterReading")
    days: dict[int, list[tuple[int, int, int, int | None]]] = defaultdict(list)
    for row in rows:
        days[row[0] - row[0] % DAY].append(row)
    for day, readings in sorted(days.items()):
        block = _sub(feed.entry(f"{href}/IntervalBlock/{day}", _iso(day)[:10]), "IntervalBlock")
        end = max(t + length for t, length, _, _ in readings)
        interval = _sub(block, "interval")
        _sub(interval, "duration", end - readings[0][0])
        _sub(interval, "start", readings[0][0])
        for start, length, wh, quality in readings:
            reading = _sub(block, "IntervalReading")
            if quality is not None:
                _sub(_sub(reading, "ReadingQuality"), "quality", quality)
            period = _sub(reading, "timePeriod")
            _sub(period, "duration", length)
            _sub(period, "start", start)
            _sub(reading, "value", wh)


def _money(amount: Decimal) -> int:
    return int((amount * MONEY_SCALE).to_integral_value())


def _summary(feed: _Feed, point: str, n: int, bill: Bill) -> None:
    currency = CURRENCIES.get(bill.charges.currency)
    if currency is None:
        raise ImportFormatError(f"ESPI has no code here for currency {bill.charges.currency}")
    meters = ", ".join(m.meter_id for m in bill.meters)
    title = f"bill {bill.bill_id} (meters {meters})"
    summary = _sub(feed.entry(f"{point}/UsageSummary/{n}", title), "UsageSummary")
    period = _sub(summary, "billingPeriod")
    _sub(period, "duration", bill.period.end - bill.period.start)
    _sub(period, "start", bill.period.start)
    _sub(summary, "billLastPeriod", _money(bill.charges.total))
    for line in bill.charges.lines:
        item = _sub(summary, "costAdditionalDetailLastPeriod")
        _sub(item, "amount", _money(line.amount))
        _sub(item, "dateTime", bill.issued_at)
        _sub(item, "note", f"{line.label}: {line.energy_wh} Wh at {line.unit_price}")
    _sub(summary, "currency", currency)
    consumption = _sub(summary, "overallConsumptionLastPeriod")
    _sub(consumption, "powerOfTenMultiplier", 0)
    _sub(consumption, "timeStamp", bill.issued_at)
    _sub(consumption, "uom", UOM_WH)
    _sub(consumption, "value", bill.energy_wh)
    _sub(summary, "qualityOfReading", 0 if bill.estimated_wh == 0 else 13)  # 13: mixed
    _sub(summary, "statusTimeStamp", bill.issued_at)


def usage_summaries(data: bytes) -> list[UsageSummary]:
    """The UsageSummaries (bills) of an ESPI feed, as `espi_feed` writes them."""
    root = SafeTree.fromstring(data, forbid_dtd=True)
    out = []
    for entry in root.findall(f"{ATOM}entry"):
        summary = entry.find(f"{ATOM}content/{ESPI}UsageSummary")
        if summary is None:
            continue
        link = entry.find(f"{ATOM}link[@rel='self']")
        href = "" if link is None else link.get("href", "")
        lines = tuple(
            (item.findtext(f"{ESPI}note") or "", int(item.findtext(f"{ESPI}amount") or 0))
            for item in summary.findall(f"{ESPI}costAdditionalDetailLastPeriod")
        )
        out.append(
            UsageSummary(
                href.partition("/UsagePoint/")[2].partition("/")[0],
                entry.findtext(f"{ATOM}title") or "",
                int(summary.findtext(f"{ESPI}billingPeriod/{ESPI}start") or 0),
                int(summary.findtext(f"{ESPI}billingPeriod/{ESPI}duration") or 0),
                int(summary.findtext(f"{ESPI}billLastPeriod") or 0),
                int(summary.findtext(f"{ESPI}currency") or 0),
                int(summary.findtext(f"{ESPI}overallConsumptionLastPeriod/{ESPI}value") or 0),
                lines,
            )
        )
    return out
