"""What the billing commands share: rows of ids, the estimated-share options, bill standing.

Apart from `cli_billing` so that each command module stays small; `cli_bills` and
`cli_corrections` use it too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.cli_common import console
from meterseal.errors import ConfigurationError

# The public files audit, verify-bill and bill-doc check bills with: each defaults to the
# deployment's (ca.cert.pem, billing.pub.pem), so meterseal.toml's deployment.dir serves all three.
MeterCaFile = Annotated[
    Path | None,
    typer.Option("--ca", help="the meter CA certificate (PEM; default: the deployment's)"),
]
BillingKeyFile = Annotated[
    Path | None,
    typer.Option("--billing-key", help="the billing public key (PEM; default: the deployment's)"),
]
AuthorityKeyFile = Annotated[
    Path | None,
    typer.Option(
        help="the authority's public key, to check its countersignature (PEM; default: the "
        "deployment's)"
    ),
]

if TYPE_CHECKING:
    from meterseal.billing.completeness import Period
    from meterseal.billing.ledger import LedgerEntry
    from meterseal.billing.policy import EstimationPolicy
    from meterseal.storage.bill_store import BillStore


MaxEstimated = Annotated[
    str,
    typer.Option(
        "--max-estimated-percent",
        help="refuse a bill whose estimated share of the period's slots exceeds this percent",
    ),
]
AllowEstimated = Annotated[
    bool,
    typer.Option(
        "--allow-estimated",
        help="bill above --max-estimated-percent anyway; the signed bill then says so",
    ),
]
SHOWN_BILLS = 20  # rows of billed customers printed before "… N more" (refusals: all)


def estimation_policy(max_estimated: str, allow: bool) -> EstimationPolicy:
    """The policy the options name; BadParameter for a limit that is no percentage."""
    from decimal import Decimal, InvalidOperation

    from meterseal.billing.policy import EstimationPolicy

    try:
        return EstimationPolicy(Decimal(max_estimated.rstrip("%")), allow)
    except (InvalidOperation, ValueError) as exc:
        raise typer.BadParameter(
            f"--max-estimated-percent is a percentage 0-100, not {max_estimated!r}"
        ) from exc


class IdRows:
    """Rows led by an id, printed as padded plain columns, one line each.

    Not a Rich table: on an 80-column terminal a table squeezes or cuts its columns, and the
    ids are what the operator copies into the next command, so they are never wrapped or cut.
    """

    def __init__(self, *header: str) -> None:
        self.header = header
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        """One row (plain text, no markup)."""
        self.rows.append(cells)

    def print(self) -> None:
        """The header and the rows, each column as wide as its widest cell."""
        lines = [self.header, *self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(self.header))]
        for line in lines:
            text = "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            console.print(text, soft_wrap=True, markup=False, highlight=False)


def bill_ledger(
    bills: BillStore, customer: str | None = None, period: Period | None = None
) -> dict[str, LedgerEntry]:
    """The bills kept (of a customer and period if given) with their standing, in log order."""
    from meterseal.billing.bill import parse_signed_bill
    from meterseal.billing.ledger import ledger

    start, end = (period.start, period.end) if period else (None, None)
    kept = bills.signed_bills(customer, start, end)
    entries = ledger((i, parse_signed_bill(signed)[0]) for i, signed in kept)
    return {e.bill.bill_id: e for e in entries}


def period_option(first_day: str | None, days: int) -> Period:
    """The period the --from and --days options name; BadParameter if --from is no date.

    Without --from: the `days` whole days (UTC) before today, the period `simulate --days`
    sends by default.
    """
    from meterseal.billing.completeness import Period

    try:
        if first_day is None:
            return Period.days(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days), days)
        return Period.days(dt.date.fromisoformat(first_day), days)
    except ValueError as exc:
        raise typer.BadParameter(f"--from: {exc}") from exc


def public_key_file(path: Path) -> ec.EllipticCurvePublicKey:
    """A P-256 public key (billing or authority) from a PEM file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read public key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"{path} is not a P-256 public key")
    return key
