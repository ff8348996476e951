"""`meterseal customers import|show`: which customer had which meter, from when to when."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from meterseal.cli_common import DEFAULT_STORE, StoreUrl, console, shown
from meterseal.errors import ConfigurationError
from meterseal.exchange.cli import SHOWN_ERRORS, ErrorsFile

customers_app = typer.Typer(
    help="Customers' meters with move-in and move-out dates.", no_args_is_help=True
)


def _when(seconds: int | None) -> str:
    from meterseal.exchange.customers import shown_moment

    return "-" if seconds is None else shown_moment(seconds)


@customers_app.command("import")
def customers_import(
    file: Annotated[Path, typer.Argument(help="CSV: customer,meter,from[,to]")],
    errors: ErrorsFile = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Assign meters to customers from move-in (from) to move-out (to, empty while it lasts)."""
    from meterseal.exchange.customers import Assigned, plan_assignments
    from meterseal.storage import Store
    from meterseal.storage.imports import Assignment, ImportStore

    with Store.open(store) as db:
        imports = ImportStore(db)
        known = imports.meter_ids()
        stored = {
            m: [Assigned(*a) for a in rows]
            for m, rows in imports.meter_assignments(sorted(known)).items()
        }
        try:
            with file.open(newline="", encoding="utf-8-sig") as handle:
                plan = plan_assignments(handle, known, stored)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read {file}: {exc}") from exc
        imports.assign(Assignment(*a) for a in plan.store)
    console.print(
        f"{len(plan.store)} assignments stored, {plan.unchanged} unchanged, "
        f"{len(plan.rejected)} rejected",
        highlight=False,
        soft_wrap=True,
    )
    for customer in sorted({a.customer_id for a in plan.store}):
        console.print(
            f"  {customer}: meterseal customers show {customer}", highlight=False, soft_wrap=True
        )
    for row in plan.rejected[:SHOWN_ERRORS]:
        console.print(f"  line {row.line}: {row.reason}", highlight=False, soft_wrap=True)
    if errors is not None and plan.rejected:
        with errors.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["customer", "meter", "from", "to", "line", "error"])
            for row in plan.rejected:
                writer.writerow([*row.fields, str(row.line), row.reason])
        console.print(f"rejected rows written to {errors}", soft_wrap=True)
    if plan.rejected:
        raise typer.Exit(code=1)


@customers_app.command("show")
def customers_show(customer: str, store: StoreUrl = DEFAULT_STORE) -> None:
    """A customer's meters, the dates each was theirs and the readings in that time."""
    from meterseal.storage import Store
    from meterseal.storage.imports import ImportStore

    end_of_time = 2**62
    with Store.open_read_only(store) as db:
        imports = ImportStore(db)
        windows = imports.customer_windows(customer, 0, end_of_time)
        if not windows:
            raise ConfigurationError(f"customer {customer!r} has no meters in {shown(store)}")
        assigned = {a.meter_id for a in imports.assignments(customer)}
        table = Table("meter", "from", "to", "signed readings", "UNSIGNED readings")
        for meter_id, spans in windows.items():
            for w in spans:
                signed, unsigned = imports.reading_counts(meter_id, w.start, w.end)
                table.add_row(
                    meter_id,
                    _when(w.start) if meter_id in assigned else "(registered)",
                    _when(None if w.end == end_of_time else w.end),
                    str(signed),
                    str(unsigned),
                )
    console.print(f"customer {customer}: {len(windows)} meters", highlight=False, soft_wrap=True)
    console.print(table)
