"""`meterseal fraud …`: rank customers by theft likelihood, explain one, evaluate on labels."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from meterseal.cli_common import console, from_config
from meterseal.meter.theft import DEFAULT_TZ
from meterseal.ui import print_table, progress_bar

if TYPE_CHECKING:
    from meterseal.fraud.data import Consumption
    from meterseal.fraud.ensemble import Scores
    from meterseal.fraud.evaluate import Comparison
    from meterseal.fraud.fleet import Labelled
    from meterseal.fraud.model import SavedModel
    from meterseal.fraud.pipeline import Analysis, Settings

fraud_app = typer.Typer(
    help="Fraud detection: rank customers by theft likelihood (a trusted job).",
    no_args_is_help=True,
)

CsvOption = Annotated[
    Path | None, typer.Option("--csv", help="long CSV: customer_id,timestamp,kwh[,phasor]")
]
SgccOption = Annotated[Path | None, typer.Option("--sgcc", help="SGCC wide CSV (CONS_NO,FLAG,…)")]
StoreOption = Annotated[
    str | None, typer.Option("--store", help="read the readings from this store URL")
]
FromKvsOption = Annotated[
    str | None,
    typer.Option(
        "--from-kvs",
        help="read the readings from the KVS gateway at this URL (months written by meterseal "
        "kvs export; its API key in MS_KVS_KEY)",
    ),
]
FromOption = Annotated[
    str | None, typer.Option("--from", help="first day read from the store (UTC, YYYY-MM-DD)")
]
DaysOption = Annotated[int, typer.Option(help="days read from the store")]
SeedOption = Annotated[
    int, typer.Option(help="seed of the map and models (same seed: same scores)")
]
TzOption = Annotated[
    str | None,
    typer.Option(
        "--tz",
        help="the meters' time zone (IANA name, e.g. UTC or Europe/Paris), required with --csv "
        "and --store: days are cut midnight to midnight in it; 'auto': estimate a fixed "
        "offset from the customers' night trough (printed)",
    ),
]
NO_TZ = (
    "{source} needs --tz: the meters' time zone, where days are cut at midnight (an IANA "
    "name such as UTC or Europe/Paris; 'auto' estimates a fixed offset from the readings "
    "and prints it). There is no default: cutting days in the wrong zone hides thefts."
)


def _zone(tz: str | None, source: str) -> str:
    """The zone named with --tz; a clear error when there is none."""
    if tz is None:
        raise typer.BadParameter(NO_TZ.format(source=source), param_hint="--tz")
    return tz


def _read_csv(path: Path, tz: str | None, source: str = "--csv") -> Consumption:
    """A long CSV cut into days of --tz (an estimate is printed, never applied silently);
    energy-only files are read in chunks (`stream`)."""
    from meterseal.fraud.readers import read_long_csv
    from meterseal.fraud.stream import ENERGY_ONLY, header, read_long_csv_streaming
    from meterseal.fraud.zone import Estimate

    def said(e: Estimate) -> None:
        console.print(f"[yellow]{e.describe()}[/yellow]")

    zone = _zone(tz, source)
    if header(path) == ENERGY_ONLY:
        return read_long_csv_streaming(path, tz=zone, on_estimate=said)
    return read_long_csv(path, tz=zone, on_estimate=said)


LabelsOption = Annotated[
    Path | None,
    typer.Option(help="inspection labels (customer_id,thief): train the supervised model"),
]


def _period(first_day: str | None, tz: str | None, source: str) -> tuple[dt.date, str]:
    """--from and --tz of a store-like source (--store, --from-kvs)."""
    from meterseal.fraud import readers

    if first_day is None:
        raise typer.BadParameter(f"{source} needs --from (and --days)")
    try:
        start = dt.date.fromisoformat(first_day)
    except ValueError as exc:
        raise typer.BadParameter(f"--from: {exc}") from exc
    zone = _zone(tz, source)
    if zone == readers.AUTO:
        raise typer.BadParameter(f"{source}: name the zone (--tz auto reads CSV files only)")
    return start, zone


def _source(
    csv: Path | None,
    sgcc: Path | None,
    store: str | None,
    first_day: str | None,
    days: int,
    tz: str | None,
    from_kvs: str | None = None,
) -> tuple[Consumption, dict[str, bool] | None]:
    """The data named by exactly one of --csv, --sgcc, --store, --from-kvs (SGCC: its labels)."""
    from meterseal.fraud import readers

    named = (("--csv", csv), ("--sgcc", sgcc), ("--store", store), ("--from-kvs", from_kvs))
    if len([name for name, v in named if v]) != 1:
        raise typer.BadParameter(
            "name exactly one data source: --csv, --sgcc, --store or --from-kvs"
        )
    if csv is not None:
        return _read_csv(csv, tz), None
    if sgcc is not None:
        return readers.read_sgcc(sgcc)
    if from_kvs is not None:
        return _read_kvs(from_kvs, *_period(first_day, tz, "--from-kvs"), days), None
    assert store is not None
    start, zone = _period(first_day, tz, "--store")
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    with Store.open_read_only(store) as db, progress_bar(console) as bar:
        bills = BillStore(db)
        task = bar.add_task("reading customers", total=len(bills.customers()))
        data = readers.read_store(
            bills, start, days, tz=zone, progress=lambda n: bar.advance(task, n)
        )
    return data, None


def _read_kvs(url: str, start: dt.date, zone: str, days: int) -> Consumption:
    """The customers' readings from the months exported into the KVS (as read_store reads)."""
    from meterseal.cli_kvs_export import kvs_originals
    from meterseal.kvs.export_read import read_consumption

    with kvs_originals(url) as reader, progress_bar(console) as bar:
        task = bar.add_task("reading customers", total=len(reader.customers()))
        return read_consumption(
            reader, start, days, tz=zone, progress=lambda n: bar.advance(task, n)
        )


def _analyse(data: Consumption, settings: Settings) -> Analysis:
    from meterseal.fraud.pipeline import analyse

    with progress_bar(console) as bar:
        task = bar.add_task("scoring customers", total=len(data.customers))
        return analyse(data, settings, progress=lambda n: bar.advance(task, n))


METHODS = ("ensemble", "seed", "supervised")


def _method(method: str | None, labels: Path | None, model: Path | None) -> str:
    """The ranking --method, --labels and --model ask for, checked before any data is read
    (a wrong combination must not cost the minutes of reading and scoring a fleet)."""
    chosen = method or ("supervised" if labels or model else "ensemble")
    if chosen not in METHODS:
        raise typer.BadParameter(f"one of {', '.join(METHODS)}", param_hint="--method")
    if labels is not None and model is not None:
        raise typer.BadParameter(
            "--labels trains a model on this data, --model applies a saved one: name one"
        )
    if model is not None and chosen != "supervised":
        raise typer.BadParameter(f"--model is a supervised model, not the {chosen} ranking")
    if labels is not None and chosen != "supervised":
        raise typer.BadParameter(f"--labels train a supervised model, unused by --method {chosen}")
    if chosen == "supervised" and labels is None and model is None:
        raise typer.BadParameter("--method supervised needs --labels or --model")
    return chosen


def _scores(
    analysis: Analysis,
    labels: dict[str, bool] | None,
    seed: int,
    method: str | None = None,
    model: SavedModel | None = None,
    model_path: Path | None = None,
) -> Scores:
    """The ranking asked for: the ensemble (default without labels), the seed's SOM score,
    or a supervised model (trained on --labels here, or read from --model)."""
    from meterseal.fraud.ensemble import Scores, applied, supervised, unsupervised

    method = method or ("supervised" if labels or model else "ensemble")
    if method == "seed":
        base = unsupervised(analysis.table)
        som = analysis.table.column("som_break")
        return Scores(analysis.table.customers, som, base.detectors, "SOM correlation (seed)")
    if method == "ensemble":
        return unsupervised(analysis.table)
    if model is not None:
        scored = applied(model.model, analysis.table)
        named = model_path.name if model_path else "given"
        name = f"model {named}: {model.thieves} thieves of {model.customers} labelled"
        return Scores(scored.customers, scored.score, scored.detectors, name)
    if not labels:
        raise typer.BadParameter("--method supervised needs --labels or --model")
    return supervised(analysis.table, labels, seed=seed)


def _explicit(ctx: typer.Context, store: str | None, *files: Path | str | None) -> str | None:
    """`store`, unless it is meterseal.toml's store and a file was named instead."""
    return None if from_config(ctx, "store") and any(files) else store


@fraud_app.command("rank")
def rank(
    ctx: typer.Context,
    csv: CsvOption = None,
    sgcc: SgccOption = None,
    store: StoreOption = None,
    first_day: FromOption = None,
    days: DaysOption = 30,
    labels: LabelsOption = None,
    out: Annotated[Path, typer.Option(help="ranking CSV to write")] = Path("fraud-ranking.csv"),
    umatrix: Annotated[
        Path | None, typer.Option(help="SOM U-matrix PNG (default: beside --out)")
    ] = None,
    top: Annotated[int, typer.Option(help="rows shown in the terminal")] = 20,
    seed: SeedOption = 1,
    tz: TzOption = None,
    from_kvs: FromKvsOption = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="ensemble (default), seed (the SOM score alone) or supervised "
            "(default with --labels or --model)"
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="a model written by `fraud train` (supervised)")
    ] = None,
) -> None:
    """Rank every customer by theft likelihood: CSV, a table and the SOM U-matrix."""
    from meterseal.fraud.model import load
    from meterseal.fraud.pipeline import Settings
    from meterseal.fraud.plots import plot_umatrix
    from meterseal.fraud.readers import read_labels
    from meterseal.fraud.report import decimals, hits, write_ranking

    method = _method(method, labels, model)
    saved = load(model) if model is not None else None  # a bad file fails before the read
    store = _explicit(ctx, store, csv, sgcc, from_kvs)
    data, own_labels = _source(csv, sgcc, store, first_day, days, tz, from_kvs)
    if saved is not None:
        saved.check(data.period_days, data.slots)
    inspected = read_labels(labels) if labels else None
    analysis = _analyse(data, Settings(seed=seed))
    scores = _scores(analysis, inspected, seed, method, saved, model)
    explanations = write_ranking(out, data, analysis, scores)
    picture = umatrix or out.with_name(out.stem + "-umatrix.png")
    plot_umatrix(analysis.shape_map, hits(analysis), picture)
    title = f"customers ranked by theft likelihood ({scores.method} ranking)"
    table = Table("rank", "customer", "score", "pattern", "since", "why", title=title)
    places = decimals(scores.score)
    for e in explanations[:top]:
        table.add_row(
            str(e.rank),
            e.customer,
            f"{e.score:.{places}f}",
            e.pattern,
            str(e.onset or ""),
            e.text(),
        )
    console.print(table)
    if own_labels is not None:
        console.print("[dim]the SGCC FLAG labels are not used by rank (see evaluate)[/dim]")
    console.print(f"ranking: {out} ({len(data.customers)} customers); U-matrix: {picture}")


@fraud_app.command("train")
def train_model(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="model file to write")],
    csv: CsvOption = None,
    sgcc: SgccOption = None,
    store: StoreOption = None,
    first_day: FromOption = None,
    days: DaysOption = 30,
    labels: LabelsOption = None,
    seed: SeedOption = 1,
    tz: TzOption = None,
) -> None:
    """Train the supervised model on labelled customers and save it (rank --model FILE)."""
    from meterseal.fraud.ensemble import train, truth_of
    from meterseal.fraud.model import SavedModel, save
    from meterseal.fraud.pipeline import Settings
    from meterseal.fraud.readers import read_labels

    data, own = _source(csv, sgcc, _explicit(ctx, store, csv, sgcc), first_day, days, tz)
    flags = read_labels(labels) if labels else own
    if not flags:
        raise typer.BadParameter("training needs labels: --labels (or an SGCC file's FLAG)")
    analysis = _analyse(data, Settings(seed=seed))
    truth = truth_of(data.customers, flags)
    known = sum(c in flags for c in data.customers)
    fitted = train(analysis.table, flags, seed=seed)
    source = str(csv or sgcc or store)
    saved = SavedModel(fitted, known, int(truth.sum()), source, data.period_days, data.slots)
    path = save(saved, model)
    console.print(f"model: {path} ({int(truth.sum())} thieves among {known} labelled customers)")
    console.print(f"rank with: meterseal fraud rank --model {path} --csv FILE --tz ZONE")


@fraud_app.command("explain")
def explain_customer(
    ctx: typer.Context,
    customer: str,
    csv: CsvOption = None,
    sgcc: SgccOption = None,
    store: StoreOption = None,
    first_day: FromOption = None,
    days: DaysOption = 30,
    out: Annotated[Path | None, typer.Option(help="PNG (default fraud-CUSTOMER.png)")] = None,
    seed: SeedOption = 1,
    tz: TzOption = None,
    from_kvs: FromKvsOption = None,
) -> None:
    """Plot one customer's days against its regular behaviour, with the evidence."""
    from meterseal.fraud.ensemble import unsupervised
    from meterseal.fraud.explain import explain
    from meterseal.fraud.pipeline import Settings
    from meterseal.fraud.plots import plot_customer

    store = _explicit(ctx, store, csv, sgcc, from_kvs)
    data, _ = _source(csv, sgcc, store, first_day, days, tz, from_kvs)
    row = data.index(customer)
    analysis = _analyse(data, Settings(seed=seed))
    scores = unsupervised(analysis.table)
    (why,) = explain(analysis, scores, data.first_day, data.period_days, data.regions, [customer])
    picture = out or Path(f"fraud-{customer}.png")
    typical = analysis.shape_map.typical
    path = plot_customer(data, analysis.daily, row, why, picture, typical)
    console.print(f"{customer}: rank {why.rank} of {len(data.customers)}: {why.text()}")
    for name, t in why.evidence:
        console.print(f"  {name:18} t = {t:6.1f}")
    if why.days:
        console.print("  days breaking the pattern: " + ", ".join(str(d) for d in why.days))
    console.print(f"plot: {path}")


@fraud_app.command("evaluate")
def evaluate(
    dataset: Annotated[
        str, typer.Argument(help="SGCC CSV, long CSV (with --labels), or 'sim' for a fleet")
    ],
    labels: LabelsOption = None,
    customers: Annotated[int, typer.Option(help="sim: simulated customers")] = 5_000,
    days: Annotated[int, typer.Option(help="sim: days per customer")] = 30,
    share: Annotated[float, typer.Option(help="sim: share of thieves")] = 0.08,
    phasor: Annotated[bool, typer.Option(help="sim: with phasor reports")] = True,
    supervised_model: Annotated[
        bool,
        typer.Option(
            "--supervised/--no-supervised",
            help="add a supervised row: it trains on the labels being evaluated (5-fold "
            "cross-validated, each customer scored by a model that never saw its label)",
        ),
    ] = False,
    seed: SeedOption = 1,
    tz: TzOption = None,
) -> None:
    """AUC, MAP@N and recall per pattern: meterseal beside IsolationForest and LOF."""
    from meterseal.fraud.ensemble import truth_of
    from meterseal.fraud.readers import read_labels, read_patterns, read_sgcc
    from meterseal.fraud.report import comparison_table

    if dataset == "sim":
        fleet = _simulated(customers, days, share, phasor, seed, tz or DEFAULT_TZ)
        data, truth, patterns = fleet.data, fleet.thief, fleet.patterns
    else:
        path = Path(dataset)
        flags: dict[str, bool] | None
        if path.suffix.lower() == ".csv" and _is_sgcc(path):
            data, flags = read_sgcc(path)
            flags = read_labels(labels) if labels is not None else flags
            if flags is None:
                raise typer.BadParameter("this SGCC file has no FLAG column: give --labels")
        elif labels is not None:
            data, flags = _read_csv(path, tz, "a long CSV"), read_labels(labels)
        else:
            raise typer.BadParameter("a long CSV needs --labels (or use an SGCC file)")
        truth = truth_of(data.customers, flags)
        named = read_patterns(labels) if labels is not None else {}
        patterns = [
            (named.get(c) or "theft") if t else ""
            for c, t in zip(data.customers, truth.tolist(), strict=True)
        ]
    result = _compare(data, truth, patterns, dataset, seed, supervised_model)
    print_table(console, comparison_table(result))


def _is_sgcc(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readline().startswith("CONS_NO")
    except OSError:
        return False


def _simulated(
    customers: int, days: int, share: float, phasor: bool, seed: int, tz: str
) -> Labelled:
    from meterseal.fraud.fleet import FleetSpec, labelled_fleet
    from meterseal.meter.theft import TheftPlan

    plan = TheftPlan(share=share, holiday_share=0.05, appliance_share=0.03, seed=seed)
    spec = FleetSpec(customers, dt.date(2026, 9, 1), days, plan, seed=seed, phasor=phasor, tz=tz)
    with progress_bar(console) as bar:
        task = bar.add_task("simulating meters", total=customers)
        return labelled_fleet(spec, progress=lambda n: bar.advance(task, n))


def _compare(
    data: Consumption,
    truth: object,
    patterns: list[str],
    dataset: str,
    seed: int,
    with_supervised: bool,
) -> Comparison:
    import numpy as np

    from meterseal.fraud.evaluate import compare
    from meterseal.fraud.pipeline import Settings

    started = time.perf_counter()
    analysis = _analyse(data, Settings(seed=seed))
    seconds = time.perf_counter() - started
    with console.status("baselines") as status:
        return compare(
            data,
            analysis,
            np.asarray(truth, bool),
            patterns,
            dataset=dataset,
            seed=seed,
            with_supervised=with_supervised,
            analysis_seconds=seconds,
            step=lambda s: status.update(s),
        )


@fraud_app.command("simulate")
def simulate(
    out: Annotated[Path, typer.Argument(help="long CSV to write (labels beside it)")],
    customers: Annotated[int, typer.Option(help="simulated customers")] = 500,
    days: Annotated[int, typer.Option(help="days per customer")] = 30,
    share: Annotated[float, typer.Option(help="share of thieves")] = 0.08,
    seed: SeedOption = 1,
    tz: TzOption = None,
) -> None:
    """Write a labelled simulated fleet (energy only): OUT (long CSV) and OUT-labels.csv."""
    from meterseal.fraud.report import write_fleet

    fleet = _simulated(customers, days, share, False, seed, tz or DEFAULT_TZ)
    labels = write_fleet(fleet, out)
    zone = tz or DEFAULT_TZ
    console.print(f"{customers} customers ({int(fleet.thief.sum())} thieves) -> {out}, {labels}")
    console.print(f"meters' time zone: {zone} (rank with: --csv {out} --tz {zone})")
