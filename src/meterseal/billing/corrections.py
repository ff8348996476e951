"""Corrections as entries of the append-only bill log (sans-IO): a credit and a rebill.

A bill is never rewritten. To correct one, billing appends two entries: a **credit** that
cancels it — the bill itself with every amount negated, its own id, time and reason, and a
reference to the cancelled bill (id and log leaf hash: the exact signed bytes) — and a
**rebill**, computed afresh from the readings and tariff of now, referring to the same bill.
The n-th correction of a customer's period is `BASE/credit-n` and `BASE/rebill-n`, where BASE
is the period's first bill id; the rebill is then the bill in force and may be corrected in
turn. The audit checks that a credit is exactly the negation of the bill it cancels and that
a rebill replaces a bill a credit cancels (`credit_problems`, `rebill_problems`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from meterseal.billing.bill import Bill
from meterseal.billing.billlog import bill_leaf
from meterseal.billing.tariff import ChargeLine, Charges

# The fields a credit takes from the bill it cancels unchanged (amounts are negated).
_COPIED = (
    "customer_id",
    "period",
    "tariff_id",
    "tariff_version",
    "tariff_digest",
    "estimation",
    "meters",
    "packets",
    "chain_head",
    "merkle_root",
    "estimated_over_limit",
)


def correction_ids(base_id: str, n: int) -> tuple[str, str]:
    """The ids of a period's n-th correction (n from 1): its credit's and its rebill's."""
    return f"{base_id}/credit-{n}", f"{base_id}/rebill-{n}"


def negated(charges: Charges) -> Charges:
    """The charges with every amount (lines and total) negated; energy and prices kept."""
    lines = tuple(
        ChargeLine(li.label, li.energy_wh, li.unit_price, -li.amount) for li in charges.lines
    )
    return Charges(charges.currency, lines, -charges.total)


def credit_for(cancelled: Bill, signed: bytes, credit_id: str, issued_at: int, reason: str) -> Bill:
    """The credit cancelling `cancelled` (whose signed bytes are `signed`)."""
    return dataclasses.replace(
        cancelled,
        bill_id=credit_id,
        issued_at=issued_at,
        charges=negated(cancelled.charges),
        kind="credit",
        refers=(cancelled.bill_id, bill_leaf(signed)),
        reason=reason,
    )


def rebill_of(fresh: Bill, replaced: Bill, signed: bytes, reason: str) -> Bill:
    """`fresh` (computed under the rebill's id) as the rebill replacing `replaced`."""
    return dataclasses.replace(
        fresh, kind="rebill", refers=(replaced.bill_id, bill_leaf(signed)), reason=reason
    )


def _reference_problems(entry: Bill, target: tuple[Bill, bytes] | None) -> list[tuple[str, str]]:
    """What is wrong with `entry`'s reference to the bill it names (None: not in the store)."""
    if entry.refers is None:  # the decoder refuses a credit or rebill without one
        return [("refers", f"a {entry.kind} that refers to no bill")]
    name, leaf = entry.refers
    if target is None:
        return [("refers", f"refers to bill {name}, which is not in the store")]
    bill, signed = target
    problems = []
    if bill_leaf(signed) != leaf:
        problems.append(("refers", f"the stored bill {name} is not the one referred to"))
    if bill.kind == "credit":
        problems.append(("refers", f"refers to {name}, a credit"))
    if (bill.customer_id, bill.period) != (entry.customer_id, entry.period):
        problems.append(("refers", f"refers to {name}, of another customer or period"))
    return problems


def credit_problems(credit: Bill, cancelled: tuple[Bill, bytes] | None) -> list[tuple[str, str]]:
    """(field, detail) of each way `credit` is not the exact cancellation of the bill it names."""
    problems = _reference_problems(credit, cancelled)
    if problems or cancelled is None:
        return problems
    bill, _ = cancelled
    for name in _COPIED:
        if getattr(credit, name) != getattr(bill, name):
            problems.append((name, f"the credit's {name} differs from the cancelled bill's"))
    if credit.charges != negated(bill.charges):
        problems.append(
            (
                "total",
                f"the credit is {credit.charges.total} {credit.charges.currency}, "
                f"the cancelled bill {bill.charges.total} {bill.charges.currency}",
            )
        )
    return problems


def rebill_problems(
    rebill: Bill, replaced: tuple[Bill, bytes] | None, period_bills: Sequence[Bill]
) -> list[tuple[str, str]]:
    """(field, detail) of each way `rebill` does not replace a credited bill of its period.

    `period_bills`: every bill of the log for the rebill's customer and period.
    """
    problems = _reference_problems(rebill, replaced)
    if rebill.refers is not None and not any(
        b.kind == "credit" and b.refers == rebill.refers for b in period_bills
    ):
        problems.append(("refers", f"no credit cancels {rebill.refers[0]}, the bill it replaces"))
    return problems
