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
    shown,
)
from meterseal.errors import ConfigurationError
from meterseal.ui import progress_bar

if TYPE_CHECKING:
    from meterseal.exchange.csv_readings import ParsedRow, RejectedRow
    from meterseal.exchange.importer import ImportReport

import_app = typer.Typer(
    help="Import meter readings (CSV, Green Button ESPI).", no_args_is_help=True
)
export_app = typer.Typer(
    help="Export readings and bills (Green Button ESPI).", no_args_is_help=True
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


@import_app.command("espi")
def import_espi(
    file: Annotated[Path, typer.Argument(help="Green Button (ESPI) Atom XML file")],
    meter: Annotated[
        list[str] | None,
        typer.Option(help="USAGEPOINT=METER for each usage point; METER alone if it has one"),
    ] = None,
    round_wh: Annotated[
        bool, typer.Option("--round-wh", help="round energy finer than 1 Wh (half to even)")
    ] = False,
    errors: ErrorsFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Import a Green Button feed's interval readings as UNSIGNED imports of the meters named."""
    from meterseal.exchange.espi import FIELDS, parse_espi, readings_of

    try:
        feed = parse_espi(file.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {file}: {exc}") from exc
    points = ", ".join(f"{p} ({t})" if t else p for p, t in feed.usage_points.items())
    console.print(f"{file.name}: usage points {points or 'none'}", highlight=False, soft_wrap=True)
    mapping = _meter_map(meter or [], list(feed.usage_points))
    rows = readings_of(feed, mapping, round_wh=round_wh)
    report = _import(rows, len(feed.readings), f"espi:{file.name}", deployment_dir, store,
                     passphrase_env)  # fmt: skip
    _show(report, errors, [*FIELDS, "reading", "error"], store)


@import_app.command("sample")
def import_sample(
    out: Annotated[Path, typer.Option(help="file to write")] = Path("household-2010-10.csv"),
    meter: Annotated[str, typer.Option(help="the meter id to give the readings")] = "MTR-000001",
) -> None:
    """Write a month of a real household's quarter-hour readings (UCI, CC BY 4.0) as CSV."""
    from importlib.resources import files

    data = files("meterseal.exchange").joinpath("data/household-2010-10.csv").read_text()
    header, _, body = data.partition("\n")
    rows = [line.partition(",")[2] for line in body.splitlines()]
    out.write_text("\n".join([header, *(f"{meter},{row}" for row in rows)]) + "\n")
    console.print(
        f"{out}: {len(rows)} quarter-hours of a household near Paris, 2010-10-01 to 2010-10-31, "
        f"as meter {meter}, times local to Europe/Paris",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  source: UCI 'Individual household electric power consumption' "
        "(Hebrail & Berard), CC BY 4.0",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  next: meterseal import csv {out} --tz Europe/Paris", highlight=False, soft_wrap=True
    )


def _meter_map(items: list[str], points: list[str]) -> dict[str, str]:
    """{usage point: meter} from --meter options (a lone METER for a feed of one usage point)."""
    mapping: dict[str, str] = {}
    for item in items:
        point, sep, meter_id = item.rpartition("=")
        if not sep:
            if len(points) != 1:
                raise typer.BadParameter(
                    f"the feed has {len(points)} usage points: give --meter USAGEPOINT=METER"
                )
            point = points[0]
        if point not in points:
            raise typer.BadParameter(f"no usage point {point!r} in the feed ({', '.join(points)})")
        mapping[point] = meter_id
    return mapping


@export_app.command("espi")
def export_espi(
    customer: Annotated[str, typer.Option(help="the customer whose data to export")],
    first_day: Annotated[str, typer.Option("--from", help="first day (UTC, YYYY-MM-DD)")],
    last_day: Annotated[str, typer.Option("--to", help="last day, included (UTC, YYYY-MM-DD)")],
    out: Annotated[
        Path | None, typer.Option(help="file to write (default CUSTOMER.espi.xml)")
    ] = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Write a customer's readings (signed and UNSIGNED apart) and bills as Green Button XML."""
    from meterseal.billing.bill import parse_signed_bill
    from meterseal.exchange.espi_write import SignedInterval, espi_feed
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore
    from meterseal.storage.imports import ImportStore

    start, end = _day(first_day, "--from"), _day(last_day, "--to") + 86_400
    if end <= start:
        raise typer.BadParameter("--to is before --from")
    with Store.open_read_only(store) as db:
        windows = ImportStore(db).customer_windows(customer, start, end)
        if not windows:
            raise ConfigurationError(f"customer {customer!r} has no meters in {shown(store)}")
        signed, unsigned = [], []
        for meter_id, spans in windows.items():
            for w in spans:
                signed += [
                    SignedInterval(r.meter_id, r.timestamp, r.interval, r.energy_wh)
                    for r in db.originals(meter_id, w.start, w.end)
                ]
                unsigned += ImportStore(db).unsigned([meter_id], w.start, w.end)
        bills = [
            parse_signed_bill(b.signed_bill)[0]
            for b in BillStore(db).bills(customer)
            if b.period_start < end and b.period_end > start
        ]
    now = int(dt.datetime.now(dt.UTC).timestamp())
    data = espi_feed(customer, list(windows), signed, unsigned, bills, now=now)
    path = out or Path(f"{customer.replace('/', '_')}.espi.xml")
    path.write_bytes(data)
    console.print(
        f"{path}: {len(windows)} meters, {len(signed)} meter-signed readings, "
        f"{len(unsigned)} UNSIGNED readings, {len(bills)} bills",
        highlight=False,
        soft_wrap=True,
    )


def _day(text: str, option: str) -> int:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: {exc}") from exc
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


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
        soft_wrap=True,
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
            soft_wrap=True,
        )
    for row in report.rejected[:SHOWN_ERRORS]:
        console.print(f"  line {row.line}: {row.reason}", highlight=False, soft_wrap=True)
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
        console.print(f"rejected rows written to {errors}", soft_wrap=True)
    if report.rejected:
        raise typer.Exit(code=1)
