"""What billing refuses to sign (sans-IO): a bill of no readings, a bill mostly estimated.

A bill with no reading in its period would charge the standing charges for energy nobody
measured; a bill whose estimated share exceeds the operator's limit would charge for energy
mostly invented. The first is always refused, the second unless the operator allows it
explicitly, and then the bill itself says so (`Bill.estimated_over_limit`, signed), so the
customer, `verify-bill` and the audit see it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from meterseal.billing.bill import Bill
from meterseal.errors import MetersealError

DEFAULT_MAX_ESTIMATED_PERCENT = Decimal(10)


class BillingError(MetersealError):
    """A bill could not be produced (unknown customer, bill exists, …)."""


# Why a bill was refused, and what an operator reads for a group of such refusals.
REFUSALS = {
    "no-readings": "no readings in the period",
    "estimated": "estimated share above the limit (--allow-estimated bills it anyway)",
    "exists": "billed already: bills are never rewritten (correct one with meterseal rebill)",
    "overlaps": "a bill in force covers part of the period (correct it with meterseal rebill)",
    "not-in-force": "not the bill in force",
    "no-meters": "no meters",
}


class BillRefused(BillingError):
    """Billing refused to sign a customer's bill; the message says why and what to do."""

    def __init__(self, customer_id: str, reason: str, kind: str) -> None:
        super().__init__(f"{customer_id}: {reason}")
        self.customer_id = customer_id
        self.reason = reason
        self.kind = kind  # a key of REFUSALS


@dataclass(frozen=True, slots=True)
class EstimationPolicy:
    """The largest estimated share (percent of the period's slots) and whether to bill above it."""

    max_estimated_percent: Decimal = DEFAULT_MAX_ESTIMATED_PERCENT
    allow_estimated: bool = False

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.max_estimated_percent <= Decimal(100):
            raise ValueError(
                f"the estimated-share limit is a percentage 0-100, not {self.max_estimated_percent}"
            )


def percent(bill: Bill) -> Decimal:
    """The bill's estimated share in percent, to two decimals (for people; checks use exact)."""
    share = bill.estimated_share
    exact = Decimal(share.numerator) * 100 / Decimal(share.denominator)
    return exact.quantize(Decimal("0.01"), ROUND_HALF_UP)


def screen(bill: Bill, policy: EstimationPolicy) -> Bill:
    """The bill as it may be signed (flagged if allowed above the limit); BillRefused if not."""
    expected = sum(m.expected for m in bill.meters)
    if bill.packets == 0:
        raise BillRefused(
            bill.customer_id,
            f"no readings in the period (0 of {expected} slots): nothing measured to bill",
            "no-readings",
        )
    if not _over(bill, policy.max_estimated_percent):
        return bill
    said = f"{percent(bill)}% estimated ({bill.estimated_slots} of {expected} slots)"
    if not policy.allow_estimated:
        raise BillRefused(
            bill.customer_id,
            f"{said}, above the {policy.max_estimated_percent}% limit "
            "(--max-estimated-percent); bill it anyway with --allow-estimated",
            "estimated",
        )
    return dataclasses.replace(bill, estimated_over_limit=policy.max_estimated_percent)


def _over(bill: Bill, limit: Decimal) -> bool:
    """Whether the estimated share exceeds `limit` percent, compared exactly (no rounding)."""
    share = bill.estimated_share
    return Decimal(share.numerator) * 100 > limit * share.denominator


def flag_problem(bill: Bill) -> str | None:
    """Why the bill's estimated-share flag is false, or None (the audit's check of the flag)."""
    limit = bill.estimated_over_limit
    if limit is None or _over(bill, limit):
        return None
    return (
        f"the bill says it is over the {limit}% estimated limit, "
        f"its statements give {percent(bill)}%"
    )
