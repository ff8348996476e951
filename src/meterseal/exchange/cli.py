"""`meterseal import csv|espi`: readings in from files (docs/import-export.md)."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
)
from meterseal.errors import ConfigurationError
from meterseal.ui import progress_bar

if TYPE_CHECKING:
    from meterseal.exchange.csv_readings import ParsedRow, RejectedRow
    from meterseal.exchange.importer import ImportReport

import_app = typer.Typer(
    help="Import meter readings (CSV, Green Button ESPI).", no_args_is_help=True
)

ErrorsFile = Annotated[
    Path | None, typer.Option("--errors", help="write the rejected rows here (CSV, with reasons)")
]
SHOWN_ERRORS = 10  # rejected rows printed; all go to --errors


@import_app.command("csv")
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV file of readings (docs/import-export.md)")],
    tz: Annotated[
        str | None,
        typer.Option(help="time zone of times without an offset (e.g. Europe/Paris)"),
    ] = None,
    round_wh: Annotated[
        bool, typer.Option("--round-wh", help="round energy finer than 1 Wh (half to even)")
    ] = False,
    errors: ErrorsFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Import readings from CSV: signed ones verified, the others stored as UNSIGNED imports."""
    from meterseal.exchange.csv_readings import CsvReadings

    try:
        total = _lines(file) - 1
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = CsvReadings(handle, tz=tz, round_wh=round_wh)
            report = _import(rows, total, f"csv:{file.name}", deployment_dir, store, passphrase_env)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {file}: {exc}") from exc
    _show(report, errors, [*rows.header, "line", "error"], store)


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _import(
    rows: Iterable[ParsedRow | RejectedRow],
    total: int,
    source: str,
    deployment_dir: Path,
    store: str,
    passphrase_env: str,
) -> ImportReport:
    from meterseal.acquisition.anonymize import Anonymizer
    from meterseal.cli_common import load
    from meterseal.exchange.importer import Importer
    from meterseal.storage import Store, StoreRegistry

    deployment = load(deployment_dir, passphrase_env)
    with Store.open(store) as db, progress_bar(console) as bar:
        registry = StoreRegistry(db, deployment.ca_cert)
        importer = Importer(db, registry, Anonymizer(deployment.anonymization_key))
        task = bar.add_task(f"importing {source}", total=max(total, 0))
        return importer.run(rows, source=source, progress=lambda n: bar.advance(task, n))


def _show(report: ImportReport, errors: Path | None, header: list[str], store: str) -> None:
    out = report.outcomes
    console.print(
        f"{report.rows} rows: {out['stored signed']} stored signed, "
        f"{out['stored unsigned']} stored UNSIGNED, {out['duplicate']} already stored, "
        f"{len(report.rejected)} rejected",
        highlight=False,
    )
    if report.first is not None and report.last is not None:
        first = dt.datetime.fromtimestamp(report.first, dt.UTC)
        last = dt.datetime.fromtimestamp(report.last, dt.UTC)
        names = sorted(report.meters)
        listed = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        console.print(
            f"{len(names)} meters ({listed}): readings from "
            f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )
    for row in report.rejected[:SHOWN_ERRORS]:
        console.print(f"  line {row.line}: {row.reason}", highlight=False)
    if len(report.rejected) > SHOWN_ERRORS:
        more = len(report.rejected) - SHOWN_ERRORS
        console.print(f"  … {more} more" + ("" if errors else " (--errors FILE lists them all)"))
    if errors is not None and report.rejected:
        with errors.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in report.rejected:
                fields = row.fields + [""] * (len(header) - 2 - len(row.fields))
                writer.writerow([*fields[: len(header) - 2], str(row.line), row.reason])
        console.print(f"rejected rows written to {errors}")
    if report.rejected:
        raise typer.Exit(code=1)
