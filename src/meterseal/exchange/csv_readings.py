"""Meter readings from CSV (sans-IO): one row a reading, each checked with one reason if refused.

The columns are named by the header (any order, case-insensitive; docs/import-export.md):
`meter`, `start` (or `timestamp`), `end` or `duration` (seconds), `kwh` or `wh`, and the
optional `quality` and `signed` (the meter's signed original, base64). Times are ISO 8601
with an offset (`2026-10-01T00:00:00+02:00`, `…Z`) or Unix seconds; a time without an offset
is refused unless the caller names the time zone it is in, and a local time a DST change makes
ambiguous or skips is refused even then.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import NamedTuple
from zoneinfo import ZoneInfo

from meterseal.billing.unsigned import QUALITIES, UnsignedReading
from meterseal.errors import MetersealError
from meterseal.model import MAX_METER_ID_LENGTH

MAX_INTERVAL = 86_400
COLUMNS = ("meter", "start", "timestamp", "end", "duration", "kwh", "wh", "quality", "signed")


class ImportFormatError(MetersealError):
    """A file to import is not in a format meterseal reads (the whole file is refused)."""


class RowError(ValueError):
    """Why one row is refused (one reason)."""


class ParsedRow(NamedTuple):
    """A row that parsed: its line, the reading and the meter's signed original if it has one."""

    line: int
    reading: UnsignedReading
    signed: bytes | None
    fields: list[str]


class RejectedRow(NamedTuple):
    """A refused row: its line, the one reason and its fields as read (for the errors file)."""

    line: int
    reason: str
    fields: list[str]


def parse_time(text: str, tz: dt.tzinfo | None) -> int:
    """Unix seconds of an ISO 8601 time with offset, or of Unix seconds; `tz` for local times."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"time {text!r} is not ISO 8601 or Unix seconds") from None
    if moment.tzinfo is None:
        if tz is None:
            raise RowError(f"time {text!r} has no UTC offset: add one, or give --tz")
        early, late = moment.replace(tzinfo=tz, fold=0), moment.replace(tzinfo=tz, fold=1)
        back = early.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
        if back != moment:  # in the hour the clocks skip
            raise RowError(f"local time {text!r} does not exist in {tz} (DST change)")
        if early.utcoffset() != late.utcoffset():  # in the hour the clocks repeat
            raise RowError(f"local time {text!r} is ambiguous in {tz} (DST change): add an offset")
        moment = early
    if moment.microsecond:
        raise RowError(f"time {text!r} has a fraction of a second")
    return int(moment.timestamp())


def parse_energy(text: str, unit: str, *, round_wh: bool) -> int:
    """Whole Wh from a kWh or Wh text; more precision than 1 Wh is refused unless rounded."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise RowError(f"{unit} {text!r} is not a number") from None
    if not value.is_finite():
        raise RowError(f"{unit} {text!r} is not a number")
    wh = value * 1000 if unit == "kwh" else value
    if wh < 0:
        raise RowError(f"{unit} {text!r} is negative (energy exported is not imported)")
    whole = wh.to_integral_value(rounding=ROUND_HALF_EVEN)
    if whole != wh and not round_wh:
        raise RowError(f"{unit} {text!r} is finer than 1 Wh: give --round-wh to round it")
    return int(whole)


class CsvReadings:
    """Rows of a CSV file of readings, parsed one by one (ParsedRow or RejectedRow)."""

    def __init__(
        self, lines: Iterable[str], *, tz: str | None = None, round_wh: bool = False
    ) -> None:
        self._reader = csv.reader(lines)
        try:
            self.tz = ZoneInfo(tz) if tz else None
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ImportFormatError(f"--tz {tz!r} is not a time zone name ({exc})") from None
        self.round_wh = round_wh
        try:
            header = next(self._reader)
        except StopIteration:
            raise ImportFormatError("the file is empty: it needs a header line") from None
        except csv.Error as exc:
            raise ImportFormatError(f"line 1: {exc}") from None
        self.header = header
        self._at = _columns(header)

    def __iter__(self) -> Iterator[ParsedRow | RejectedRow]:
        """Each row after the header, in order (blank lines skipped)."""
        rows = self._reader
        while True:
            try:
                fields = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RejectedRow(rows.line_num, f"not CSV: {exc}", [])
                continue
            if not any(f.strip() for f in fields):
                continue
            try:
                yield self._row(rows.line_num, fields)
            except RowError as exc:
                yield RejectedRow(rows.line_num, str(exc), fields)

    def _row(self, line: int, fields: list[str]) -> ParsedRow:
        if len(fields) != len(self.header):
            raise RowError(f"{len(fields)} fields, the header has {len(self.header)}")
        at = self._at

        def get(name: str) -> str:
            return fields[at[name]].strip() if name in at else ""

        meter_id = get("meter")
        if not 0 < len(meter_id) <= MAX_METER_ID_LENGTH:
            raise RowError(f"meter id must be 1..{MAX_METER_ID_LENGTH} characters")
        start = parse_time(get("start"), self.tz)
        if start <= 0:
            raise RowError("start must be after 1970-01-01")
        if "end" in at:
            interval = parse_time(get("end"), self.tz) - start
        else:
            duration = get("duration")
            if not duration.isdigit():
                raise RowError(f"duration {duration!r} is not whole seconds")
            interval = int(duration)
        if not 0 < interval <= MAX_INTERVAL:
            raise RowError(f"the interval is {interval} s: it must be 1..{MAX_INTERVAL} s")
        unit = "kwh" if "kwh" in at else "wh"
        energy = parse_energy(get(unit), unit, round_wh=self.round_wh)
        quality = get("quality").lower() or "measured"
        if quality not in QUALITIES:
            raise RowError(f"quality {quality!r} is not one of {', '.join(QUALITIES)}")
        signed = None
        if get("signed"):
            try:
                signed = base64.b64decode(get("signed"), validate=True)
            except (binascii.Error, ValueError):
                raise RowError("signed is not base64") from None
        reading = UnsignedReading(meter_id, start, interval, energy, quality)
        return ParsedRow(line, reading, signed, fields)


def _columns(header: list[str]) -> dict[str, int]:
    """Column positions by name; ImportFormatError if a name is unknown, twice or missing."""
    at: dict[str, int] = {}
    for i, raw in enumerate(header):
        name = raw.strip().lower().lstrip("\ufeff")
        if name not in COLUMNS:
            raise ImportFormatError(f"unknown column {raw!r}: the columns are {', '.join(COLUMNS)}")
        if name in at or (name == "timestamp" and "start" in at):
            raise ImportFormatError(f"column {raw!r} is given twice")
        at["start" if name == "timestamp" else name] = i
    needs = {
        "meter": ("meter",),
        "start": ("start", "timestamp"),
        "end or duration": ("end", "duration"),
        "kwh or wh": ("kwh", "wh"),
    }
    for what, names in needs.items():
        present = [n for n in names if n in at]
        if what == "start" and "start" in at:
            continue
        if not present:
            raise ImportFormatError(f"the header needs a column {what}: it has {', '.join(header)}")
        if len(present) > 1:
            raise ImportFormatError(f"give one of {' or '.join(names)}, not both")
    return at
