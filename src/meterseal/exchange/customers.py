"""Customer-meter assignments from CSV (sans-IO): who had which meter from when to when.

Columns (header, any order): `customer`, `meter`, `from` and the optional `to` (move-out;
empty while it lasts). Times are a date (`2026-10-15`: midnight UTC, as billing days are), an
ISO 8601 time with an offset, or Unix seconds. A meter has one customer at a time: a row
whose interval overlaps another of the same meter (in the file or already stored) is refused
with the reason; a row for a (meter, from) already stored replaces it, so a move-out date can
be added later.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from meterseal.exchange.csv_readings import ImportFormatError, RejectedRow, RowError, parse_time

COLUMNS = ("customer", "meter", "from", "to")


class Assigned(NamedTuple):
    """A meter's customer over [valid_from, valid_to) (None: still theirs)."""

    customer_id: str
    meter_id: str
    valid_from: int
    valid_to: int | None

    def overlaps(self, other: Assigned) -> bool:
        """Whether the two intervals share a second."""
        end = self.valid_to if self.valid_to is not None else 2**63
        other_end = other.valid_to if other.valid_to is not None else 2**63
        return self.valid_from < other_end and other.valid_from < end


def parse_moment(text: str) -> int:
    """Unix seconds of a date (midnight UTC), an ISO 8601 time with offset or Unix seconds."""
    text = text.strip()
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise RowError(f"date {text!r} is not a date") from None
        return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    return parse_time(text, None)


def shown_moment(seconds: int) -> str:
    """A time as people read it: the date if it is midnight UTC, else date and time in UTC."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return f"{moment:%Y-%m-%d}" if moment.time() == dt.time() else f"{moment:%Y-%m-%d %H:%M} UTC"


class AssignmentPlan(NamedTuple):
    """What an assignments file asks for: rows to store (new or replacing) and refused rows."""

    store: list[Assigned]
    unchanged: int
    rejected: list[RejectedRow]


def plan_assignments(
    lines: Iterable[str], known_meters: set[str], stored: Mapping[str, Sequence[Assigned]]
) -> AssignmentPlan:
    """Check every row against the meters and the stored and earlier rows of its meter."""
    reader = csv.reader(lines)
    header = [h.strip().lower().lstrip("\ufeff") for h in next(reader, [])]
    missing = [c for c in COLUMNS[:3] if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        raise ImportFormatError(
            f"the header must name {', '.join(COLUMNS[:3])} and optionally to, once each "
            f"(it has {', '.join(header) or 'nothing'})"
        )
    at = {name: header.index(name) for name in header}
    current = {m: list(rows) for m, rows in stored.items()}
    plan = AssignmentPlan([], 0, [])
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        try:
            row = _row(fields, at, known_meters)
            kept = current.setdefault(row.meter_id, [])
            same = next((a for a in kept if a.valid_from == row.valid_from), None)
            clash = next((a for a in kept if a is not same and a.overlaps(row)), None)
            if clash is not None:
                until = "now" if clash.valid_to is None else shown_moment(clash.valid_to)
                raise RowError(
                    f"meter {row.meter_id} is {clash.customer_id}'s from "
                    f"{shown_moment(clash.valid_from)} to {until}: one customer at a time"
                )
        except RowError as exc:
            plan.rejected.append(RejectedRow(reader.line_num, str(exc), fields))
            continue
        if same == row:
            plan = plan._replace(unchanged=plan.unchanged + 1)
            continue
        if same is not None:
            kept.remove(same)
        kept.append(row)
        plan.store.append(row)
    return plan


def _row(fields: list[str], at: Mapping[str, int], known_meters: set[str]) -> Assigned:
    if len(fields) != len(at):
        raise RowError(f"{len(fields)} fields, the header has {len(at)}")
    customer, meter_id = fields[at["customer"]].strip(), fields[at["meter"]].strip()
    if not customer or not meter_id:
        raise RowError("customer and meter must not be empty")
    if meter_id not in known_meters:
        raise RowError(f"meter {meter_id} is not registered")
    start = parse_moment(fields[at["from"]])
    end_text = fields[at["to"]].strip() if "to" in at else ""
    end = parse_moment(end_text) if end_text else None
    if end is not None and end <= start:
        raise RowError("to (move-out) must be after from (move-in)")
    return Assigned(customer, meter_id, start, end)
