"""Green Button (ESPI): the Alliance's sample read, refusals with reasons, round trips."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.bill import Bill, MeterStatement
from meterseal.billing.completeness import Period
from meterseal.billing.tariff_pricing import ChargeLine, Charges
from meterseal.billing.unsigned import QUALITIES, UnsignedReading
from meterseal.exchange.csv_readings import ImportFormatError, ParsedRow, RejectedRow, RowError
from meterseal.exchange.espi import energy_wh, parse_espi, quality_of, readings_of
from meterseal.exchange.espi_write import (
    MONEY_SCALE,
    SignedInterval,
    espi_feed,
    usage_summaries,
)

SAMPLE = Path(__file__).resolve().parents[1] / "vectors" / "espi" / "test_usage_data_01.xml"
NOW = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())


def test_the_green_button_alliance_sample_reads_as_96_quarter_hours_of_its_usage_point() -> None:
    feed = parse_espi(SAMPLE.read_bytes())
    assert feed.usage_points == {"5446AF3F": "Front Electric Meter"}
    rows = list(readings_of(feed, {"5446AF3F": "MTR-1"}))
    assert len(rows) == 96
    assert all(isinstance(r, ParsedRow) for r in rows)
    readings = [r.reading for r in rows if isinstance(r, ParsedRow)]
    # The sample's first two readings: 282 Wh estimated (quality 8), 323 Wh edited (7).
    assert readings[:2] == [
        UnsignedReading("MTR-1", 1330578000, 900, 282, "estimated"),
        UnsignedReading("MTR-1", 1330578900, 900, 323, "substituted"),
    ]
    assert [r.timestamp for r in readings] == list(range(1330578000, 1330578000 + 96 * 900, 900))
    assert {r.quality for r in readings[2:]} == {"measured"}


def test_an_unmapped_usage_point_refuses_its_readings_with_the_reason() -> None:
    rows = list(readings_of(parse_espi(SAMPLE.read_bytes()), {}))
    assert {r.reason for r in rows if isinstance(r, RejectedRow)} == {
        "usage point 5446AF3F is mapped to no meter (--meter POINT=METER)"
    }


def feed_with(reading_type: str, value: str = "1234") -> bytes:
    return f"""<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom">
 <entry><link rel="self" href="/RetailCustomer/1/UsagePoint/UP1"/>
  <content><UsagePoint xmlns="http://naesb.org/espi"><ServiceCategory><kind>0</kind>
  </ServiceCategory></UsagePoint></content></entry>
 <entry><link rel="self" href="/RetailCustomer/1/UsagePoint/UP1/MeterReading/1"/>
  <link rel="related" href="/ReadingType/9"/>
  <content><MeterReading xmlns="http://naesb.org/espi"/></content></entry>
 <entry><link rel="self" href="/ReadingType/9"/>
  <content><ReadingType xmlns="http://naesb.org/espi">{reading_type}</ReadingType></content></entry>
 <entry><link rel="self" href="/RetailCustomer/1/UsagePoint/UP1/MeterReading/1/IntervalBlock/1"/>
  <content><IntervalBlock xmlns="http://naesb.org/espi">
   <IntervalReading><timePeriod><duration>3600</duration><start>1790812800</start></timePeriod>
   <value>{value}</value></IntervalReading></IntervalBlock></content></entry>
</feed>""".encode()


@pytest.mark.parametrize(
    ("reading_type", "outcome"),
    [
        ("<uom>72</uom><powerOfTenMultiplier>3</powerOfTenMultiplier>", 1_234_000),
        ("<uom>72</uom><powerOfTenMultiplier>-3</powerOfTenMultiplier>", "finer than 1 Wh"),
        ("<uom>38</uom>", "uom 38 is not 72"),
        ("<uom>72</uom><flowDirection>19</flowDirection>", "flowDirection 19"),
        (
            "<uom>72</uom><accumulationBehaviour>1</accumulationBehaviour>",
            "accumulationBehaviour 1",
        ),
    ],
)
def test_reading_types_scale_or_refuse_each_reading(reading_type: str, outcome: object) -> None:
    (row,) = readings_of(parse_espi(feed_with(reading_type)), {"UP1": "M"})
    if isinstance(outcome, int):
        assert isinstance(row, ParsedRow)
        assert row.reading == UnsignedReading("M", 1790812800, 3600, outcome)
    else:
        assert isinstance(row, RejectedRow)
        assert str(outcome) in row.reason


def test_energy_rounds_half_to_even_only_when_asked() -> None:
    assert energy_wh(1500, -3, round_wh=True) == 2
    assert energy_wh(2500, -3, round_wh=True) == 2
    assert energy_wh(2501, -3, round_wh=True) == 3
    assert energy_wh(7, 0) == 7
    with pytest.raises(RowError):
        energy_wh(1500, -3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<?xml version='1.0'?><!DOCTYPE feed [<!ENTITY a 'aaaa'>]><feed>&a;</feed>", "DTD"),
        (b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><x/>', "DTD"),
        (b"not xml", "not XML"),
        (b"<html/>", "not an Atom feed"),
        (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', "no IntervalBlock"),
    ],
)
def test_files_that_are_not_plain_espi_are_refused_whole(data: bytes, reason: str) -> None:
    with pytest.raises(ImportFormatError, match=reason):
        parse_espi(data)


def test_quality_codes_fold_into_three() -> None:
    assert [quality_of(c) for c in (0, 8, 9, 7, 11, 14, 19)] == [
        "measured", "estimated", "estimated", "substituted", "substituted", "measured", "measured",
    ]  # fmt: skip


meter_ids = st.sampled_from(["MTR-1", "MTR-2", "MTR-3"])
unsigned = st.builds(
    UnsignedReading,
    meter_ids,
    st.integers(1, 3_000_000).map(lambda k: k * 900),
    st.sampled_from([900, 1800, 3600]),
    st.integers(0, 10**9),
    st.sampled_from(QUALITIES),
)
signed = st.builds(
    SignedInterval,
    meter_ids,
    st.integers(1, 3_000_000).map(lambda k: k * 900),
    st.just(900),
    st.integers(0, 10**9),
)


class _Keyed(Protocol):
    @property
    def meter_id(self) -> str: ...
    @property
    def timestamp(self) -> int: ...


_K = TypeVar("_K", bound=_Keyed)


def _unique(items: list[_K]) -> list[_K]:
    seen: set[tuple[str, int]] = set()
    out: list[_K] = []
    for item in items:
        key = (item.meter_id, item.timestamp)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


@given(st.lists(unsigned, max_size=30), st.lists(signed, max_size=30))
def test_readings_exported_as_espi_import_back_the_same(
    unsigned_in: list[UnsignedReading], signed_in: list[SignedInterval]
) -> None:
    unsigned_in = _unique(unsigned_in)
    signed_in = _unique(signed_in)
    meters = ["MTR-1", "MTR-2", "MTR-3"]
    data = espi_feed("CUST-1", meters, signed_in, unsigned_in, [], now=NOW)
    feed = parse_espi(data) if (signed_in or unsigned_in) else None
    if feed is None:
        with pytest.raises(ImportFormatError):
            parse_espi(data)
        return
    assert feed.usage_points == {m: m for m in meters}
    back = [
        r.reading for r in readings_of(feed, {m: m for m in meters}) if isinstance(r, ParsedRow)
    ]
    assert len(back) == len(signed_in) + len(unsigned_in)
    expected = sorted(unsigned_in) + sorted(
        UnsignedReading(s.meter_id, s.timestamp, s.interval, s.energy_wh) for s in signed_in
    )
    assert sorted(back) == sorted(expected)


def a_bill(total: str, lines: list[tuple[str, int, str, str]], meters: tuple[str, ...]) -> Bill:
    period = Period.days(dt.date(2026, 10, 1), 30)
    statements = tuple(MeterStatement(m, 2880, 2880, 1000, 0, (), (), ()) for m in meters)
    charges = Charges(
        "EUR",
        tuple(
            ChargeLine(label, wh, Decimal(price), Decimal(amount))
            for label, wh, price, amount in lines
        ),
        Decimal(total),
    )
    return Bill(f"CUST-1/{period.start}-{period.end}", "CUST-1", period, NOW, "t", 1, b"\0" * 32,
                "linear", statements, charges, 5760, b"\1" * 32, b"\2" * 32)  # fmt: skip


def test_a_bill_goes_out_as_a_usage_summary_and_reads_back() -> None:
    bill = a_bill(
        "12.35",
        [("energy", 2000, "0.25", "0.50"), ("standing charge", 0, "11.85", "11.85")],
        ("MTR-1", "MTR-2"),
    )
    data = espi_feed("CUST-1", ["MTR-1", "MTR-2"], [], [], [bill], now=NOW)
    (summary,) = usage_summaries(data)
    assert summary.usage_point == "MTR-1"
    assert summary.title == f"bill {bill.bill_id} (meters MTR-1, MTR-2)"
    assert (summary.start, summary.duration) == (bill.period.start, 30 * 86_400)
    assert summary.bill_last_period == 1_235_000  # EUR 12.35 in hundred-thousandths
    assert summary.currency == 978
    assert summary.energy_wh == 2000
    assert [amount for _, amount in summary.lines] == [50_000, 1_185_000]
    assert sum(amount for _, amount in summary.lines) == summary.bill_last_period
    assert summary.lines[1][0] == "standing charge: 0 Wh at 11.85"
    assert MONEY_SCALE == 100_000
