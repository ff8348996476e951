"""Customer-meter assignments: one customer per meter at a time, move-out dates added later."""

from __future__ import annotations

import io

import pytest

from meterseal.exchange.csv_readings import ImportFormatError
from meterseal.exchange.customers import Assigned, parse_moment, plan_assignments

OCT1, OCT16, NOV1 = 1790812800, 1792108800, 1793491200
METERS = {"M1", "M2"}


def plan(text: str, stored: dict[str, list[Assigned]] | None = None):  # type: ignore[no-untyped-def]
    return plan_assignments(io.StringIO(text), METERS, stored or {})


def test_two_tenants_of_one_meter_and_a_customer_with_two_meters() -> None:
    p = plan(
        "customer,meter,from,to\n"
        "ALICE,M1,2026-10-01,2026-10-16\n"
        "BOB,M1,2026-10-16,\n"
        "BOB,M2,2026-10-01T02:00:00+02:00,\n"
    )
    assert p.rejected == []
    assert p.store == [
        Assigned("ALICE", "M1", OCT1, OCT16),
        Assigned("BOB", "M1", OCT16, None),
        Assigned("BOB", "M2", OCT1, None),
    ]


def test_overlaps_unknown_meters_and_reversed_dates_are_refused_with_their_line() -> None:
    stored = {"M1": [Assigned("ALICE", "M1", OCT1, None)]}
    p = plan(
        "customer,meter,from,to\n"
        "BOB,M1,2026-10-16,\n"  # ALICE has not moved out
        "BOB,M9,2026-10-16,\n"
        "BOB,M2,2026-10-16,2026-10-01\n"
        "BOB,M2,2026-10-16,\n",
        stored,
    )
    assert [(r.line, r.reason) for r in p.rejected] == [
        (2, "meter M1 is ALICE's from 2026-10-01 to now: one customer at a time"),
        (3, "meter M9 is not registered"),
        (4, "to (move-out) must be after from (move-in)"),
    ]
    assert p.store == [Assigned("BOB", "M2", OCT16, None)]


def test_a_move_out_added_later_replaces_the_open_assignment_and_repeats_change_nothing() -> None:
    stored = {"M1": [Assigned("ALICE", "M1", OCT1, None)]}
    text = "customer,meter,from,to\nALICE,M1,2026-10-01,2026-10-16\nBOB,M1,2026-10-16,\n"
    p = plan(text, stored)
    assert p.rejected == []
    assert p.store == [Assigned("ALICE", "M1", OCT1, OCT16), Assigned("BOB", "M1", OCT16, None)]
    again = plan(text, {"M1": p.store})
    assert (again.store, again.unchanged) == ([], 2)


def test_a_header_without_the_columns_is_refused_whole() -> None:
    with pytest.raises(ImportFormatError, match="customer, meter, from"):
        plan("customer,meter,since\nA,M1,2026-10-01\n")


def test_moments() -> None:
    assert parse_moment("2026-11-01") == NOV1
    assert parse_moment(str(NOV1)) == NOV1
    assert parse_moment("2026-11-01T01:00:00+01:00") == NOV1
