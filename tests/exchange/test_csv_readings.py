"""CSV readings: columns, times with offsets or an explicit zone, one reason per refused row."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.unsigned import QUALITIES, UnsignedReading
from meterseal.exchange.csv_readings import (
    CsvReadings,
    ImportFormatError,
    ParsedRow,
    RejectedRow,
    RowError,
    parse_energy,
    parse_time,
)


def rows_of(text: str, **options: object) -> list[ParsedRow | RejectedRow]:
    return list(CsvReadings(io.StringIO(text), **options))  # type: ignore[arg-type]


def test_a_row_with_offsets_becomes_a_reading_in_utc() -> None:
    (row,) = rows_of(
        "meter,start,end,kwh,quality\n"
        "MTR-1,2026-10-01T00:00:00+02:00,2026-10-01T00:15:00+02:00,0.125,estimated\n"
    )
    assert isinstance(row, ParsedRow)
    start = int(dt.datetime(2026, 9, 30, 22, tzinfo=dt.UTC).timestamp())
    assert row.reading == UnsignedReading("MTR-1", start, 900, 125, "estimated")
    assert row.line == 2
    assert row.signed is None


def test_timestamp_and_duration_in_unix_seconds_and_wh() -> None:
    (row,) = rows_of("Meter,Timestamp,Duration,Wh\nM,1790812800,900,17\n")
    assert isinstance(row, ParsedRow)
    assert row.reading == UnsignedReading("M", 1790812800, 900, 17)


def test_a_local_time_needs_a_zone_and_is_refused_when_dst_makes_it_ambiguous() -> None:
    text = (
        "meter,start,duration,kwh\n"
        "M,2026-10-25 02:30:00,900,1\n"  # twice in Paris (the clocks go back at 03:00)
        "M,2026-03-29 02:30:00,900,1\n"  # never in Paris (the clocks jump 02:00 -> 03:00)
        "M,2026-10-01 00:00:00,900,1\n"
    )
    refused = rows_of(text)
    assert [r.reason for r in refused if isinstance(r, RejectedRow)] == [
        f"time '{t}' has no UTC offset: add one, or give --tz"
        for t in ("2026-10-25 02:30:00", "2026-03-29 02:30:00", "2026-10-01 00:00:00")
    ]
    ambiguous, skipped, fine = rows_of(text, tz="Europe/Paris")
    assert isinstance(ambiguous, RejectedRow)
    assert "ambiguous" in ambiguous.reason
    assert isinstance(skipped, RejectedRow)
    assert "does not exist" in skipped.reason
    assert isinstance(fine, ParsedRow)
    assert fine.reading.timestamp == int(dt.datetime(2026, 9, 30, 22, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("M,2026-10-01T00:00:00Z,900,-1", "negative"),
        ("M,2026-10-01T00:00:00Z,900,0.0005", "finer than 1 Wh"),
        ("M,2026-10-01T00:00:00Z,900,abc", "not a number"),
        ("M,2026-10-01T00:00:00Z,0,1", "the interval is 0 s"),
        ("M,2026-10-01T00:00:00Z,15m,1", "not whole seconds"),
        ("M,yesterday,900,1", "not ISO 8601"),
        (",2026-10-01T00:00:00Z,900,1", "meter id"),
        ("M,2026-10-01T00:00:00Z,900", "3 fields, the header has 4"),
    ],
)
def test_each_refused_row_has_its_line_and_one_reason(row: str, reason: str) -> None:
    good = "M,2026-10-01T00:00:00Z,900,1"
    first, refused, last = rows_of(f"meter,start,duration,kwh\n{good}\n{row}\n{good}\n")
    assert isinstance(first, ParsedRow)
    assert isinstance(last, ParsedRow)
    assert isinstance(refused, RejectedRow)
    assert refused.line == 3
    assert reason in refused.reason


def test_quality_and_signed_columns() -> None:
    text = "meter,start,duration,wh,quality,signed\nM,1,900,1,guessed,\nM,1,900,1,,not-base64!\n"
    quality, signed = rows_of(text)
    assert isinstance(quality, RejectedRow)
    assert "quality 'guessed'" in quality.reason
    assert isinstance(signed, RejectedRow)
    assert signed.reason == "signed is not base64"
    (row,) = rows_of("meter,start,duration,wh,signed\nM,1,900,1,AAEC\n")
    assert isinstance(row, ParsedRow)
    assert row.signed == b"\x00\x01\x02"


def test_round_wh_rounds_half_to_even_only_when_asked() -> None:
    assert parse_energy("0.0025", "kwh", round_wh=True) == 2
    assert parse_energy("0.0035", "kwh", round_wh=True) == 4
    assert parse_energy("1.5", "wh", round_wh=True) == 2
    with pytest.raises(RowError):
        parse_energy("1.5", "wh", round_wh=False)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "empty"),
        ("meter,start,kwh", "end or duration"),
        ("meter,start,duration", "kwh or wh"),
        ("meter,start,duration,kwh,wh", "not both"),
        ("meter,start,duration,kwh,colour", "unknown column 'colour'"),
        ("meter,start,timestamp,duration,kwh", "twice"),
    ],
)
def test_a_header_meterseal_cannot_read_refuses_the_file(header: str, reason: str) -> None:
    with pytest.raises(ImportFormatError, match=reason):
        CsvReadings(io.StringIO(header + "\n" if header else ""))


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ImportFormatError, match="Mars/Olympus"):
        CsvReadings(io.StringIO("meter,start,duration,kwh\n"), tz="Mars/Olympus")


def test_parse_time_refuses_fractions() -> None:
    with pytest.raises(RowError, match="fraction"):
        parse_time("2026-10-01T00:00:00.5Z", None)


readings = st.builds(
    UnsignedReading,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
            min_size=1, max_size=64).filter(lambda s: s.strip() == s),
    st.integers(1, 4_000_000_000),
    st.integers(1, 86_400),
    st.integers(0, 10**12),
    st.sampled_from(QUALITIES),
)  # fmt: skip
zones = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(-dt.timedelta(hours=5, minutes=30))]
)


@given(st.lists(readings, max_size=20), zones)
def test_readings_written_as_csv_read_back_the_same(
    written: list[UnsignedReading], zone: dt.tzinfo
) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["meter", "start", "end", "kwh", "quality"])
    for r in written:
        start = dt.datetime.fromtimestamp(r.timestamp, zone)
        end = dt.datetime.fromtimestamp(r.timestamp + r.interval, zone)
        kwh = f"{r.energy_wh // 1000}.{r.energy_wh % 1000:03d}"
        w.writerow([r.meter_id, start.isoformat(), end.isoformat(), kwh, r.quality])
    parsed = list(CsvReadings(io.StringIO(out.getvalue())))
    assert all(isinstance(p, ParsedRow) for p in parsed)
    assert [p.reading for p in parsed if isinstance(p, ParsedRow)] == written
