"""`meterseal rebill`: correct a bill with a credit and a rebill appended to the bill log.

With the command line, not in billing: it opens the store a URL names and hands its
repositories to the billing service (`BillingService.correct`), which appends both entries.
"""

from __future__ import annotations

from typing import Annotated

import typer

from meterseal.cli_billing_parts import AllowEstimated, IdRows, MaxEstimated, estimation_policy
from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
)
from meterseal.errors import ConfigurationError

corrections_app = typer.Typer()


@corrections_app.command("rebill")
def rebill(
    bill_id: Annotated[str, typer.Argument(metavar="BILL", help="the bill in force to correct")],
    reason: Annotated[str, typer.Option(help="why (signed into the credit and the rebill)")],
    tariff: Annotated[
        str | None,
        typer.Option(
            help="tariff id, optionally @version (default: the bill's, version in force then)"
        ),
    ] = None,
    estimation: Annotated[
        str | None, typer.Option(help="linear, zero or previous-day (default: the bill's)")
    ] = None,
    max_estimated_percent: MaxEstimated = "10",
    allow_estimated: AllowEstimated = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show the credit and rebill; sign and write nothing")
    ] = False,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Cancel a bill with a credit and replace it with a rebill from today's readings and tariff.

    Bills are never rewritten: both entries are appended to the bill log, together, and refer
    to the bill they correct. The rebill is refused as `bill` refuses a bill.
    """
    from meterseal.billing.bill import parse_signed_bill
    from meterseal.billing.completeness import estimation_rule
    from meterseal.billing.policy import percent
    from meterseal.billing.service import BillingService
    from meterseal.cli_common import load
    from meterseal.exchange.cli_scope import meter_windows
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore
    from meterseal.storage.imports import ImportStore

    policy = estimation_policy(max_estimated_percent, allow_estimated)
    deployment = load(deployment_dir, passphrase_env)
    with Store.open(store) as db:
        bills = BillStore(db)
        stored = bills.bill(bill_id)
        if stored is None:
            raise ConfigurationError(f"no bill {bill_id!r} (meterseal bills list shows the ids)")
        billed, _ = parse_signed_bill(stored.signed_bill)
        tariff_id, _, version = (tariff or billed.tariff_id).partition("@")
        book = bills.tariff_book()
        try:
            chosen = (
                book.get(tariff_id, int(version))
                if version
                else book.in_force(tariff_id, billed.period.start)
            )
        except (KeyError, ValueError) as exc:
            raise typer.BadParameter(f"--tariff: {exc}") from exc
        service = BillingService(
            bills,
            deployment.billing_key,
            estimation=estimation_rule(estimation or billed.estimation),
            policy=policy,
        )
        period = billed.period
        owned = ImportStore(db).customers_between(period.start, period.end)
        meters = owned.get(billed.customer_id, {})
        done = service.correct(
            bill_id, meters, chosen, reason, dry_run=dry_run, windows=meter_windows(meters, period)
        )
    credit, new = done.credit, done.rebill
    rows = IdRows("bill", "kind", "total", "", "readings", "estimated", "kWh")
    rows.add_row(credit.bill_id, "credit", f"{credit.charges.total} {credit.charges.currency}",
                 f"cancels {bill_id}", "", "", "")  # fmt: skip
    rows.add_row(
        new.bill_id,
        "rebill",
        f"{new.charges.total} {new.charges.currency}",
        f"replaces {bill_id}",
        f"{sum(m.received for m in new.meters)}/{sum(m.expected for m in new.meters)}",
        f"{percent(new)}%" + ("" if new.estimated_over_limit is None else " (over the limit)"),
        f"{new.energy_wh / 1000:.1f}",
    )
    rows.print()
    difference = new.charges.total + credit.charges.total
    console.print(
        f"difference: {difference} {new.charges.currency}; reason: {reason}", soft_wrap=True
    )
    if done.log_indices is None:
        console.print("dry run: nothing was signed or written", soft_wrap=True)
        return
    first, second = done.log_indices
    console.print(
        f"appended to the bill log at {first} and {second}; audit them: "
        f"meterseal audit --bill '{credit.bill_id}' --bill '{new.bill_id}'",
        soft_wrap=True,
    )
