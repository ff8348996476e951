"""The bill log as an operator reads it (sans-IO): which bills are in force, which corrected.

Bills are never rewritten: a correction appends a credit (cancelling a bill) and a rebill
(replacing it), both referring to it (`Bill.refers`). Reading the log's bills of a customer
and period in log order tells each bill's standing: in force, credited, superseded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meterseal.billing.bill import Bill
from meterseal.billing.completeness import Period


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A bill of the log with its standing: the credit cancelling it, the rebill replacing it."""

    bill: Bill
    log_index: int
    credited_by: str | None = None
    superseded_by: str | None = None

    @property
    def in_force(self) -> bool:
        """A bill (or rebill) no credit cancels: what the customer owes. Credits are not."""
        return self.bill.kind != "credit" and self.credited_by is None

    @property
    def standing(self) -> str:
        """One line for tables: in force, superseded by …, credited by …, cancels …."""
        if self.bill.kind == "credit":
            return f"cancels {self.bill.refers[0]}" if self.bill.refers else "credit"
        if self.superseded_by:
            return f"superseded by {self.superseded_by}"
        if self.credited_by:
            return f"credited by {self.credited_by}"
        return "in force"


def ledger(bills: Iterable[tuple[int, Bill]]) -> list[LedgerEntry]:
    """Each (log index, bill) with its standing, in log order."""
    ordered = sorted(bills, key=lambda item: item[0])
    credited: dict[str, str] = {}
    superseded: dict[str, str] = {}
    for _, bill in ordered:
        if bill.refers is not None:
            target = credited if bill.kind == "credit" else superseded
            target.setdefault(bill.refers[0], bill.bill_id)
    return [
        LedgerEntry(bill, index, credited.get(bill.bill_id), superseded.get(bill.bill_id))
        for index, bill in ordered
    ]


def overlaps(a: Period, b: Period) -> bool:
    """Whether two [start, end) periods share a second (adjacent periods do not)."""
    return a.start < b.end and b.start < a.end


def in_force_overlapping(bills: Iterable[tuple[int, Bill]], period: Period) -> dict[str, list[str]]:
    """The ids of the bills in force whose periods overlap `period`, by customer, in log order.

    `bills`: (log index, bill) of the log's bills overlapping `period` (a credit has the
    period of the bill it cancels, so it is among them): what a billing run must not bill again.
    """
    found: dict[str, list[str]] = {}
    for entry in ledger(bills):
        if entry.in_force and overlaps(entry.bill.period, period):
            found.setdefault(entry.bill.customer_id, []).append(entry.bill.bill_id)
    return found
