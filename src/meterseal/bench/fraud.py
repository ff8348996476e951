"""`meterseal bench fraud`: rank a utility's customers, and how good the ranking is.

Two experiments:
  * Scale: rank --customers (65,000, the SecureCloud simulator's fleet) x --days (30) of
    15-minute readings. Consumption comes from the load model chunk by chunk (the stand-in
    for reading the store, timed apart); the fraud job trains its map on the first chunk's
    days, then streams: per-day series per chunk, features, ensemble and the explanations of
    the top of the ranking. Reported: seconds of each part, customers per second, and the
    process's peak resident memory.
  * Quality: a labelled simulator fleet (--eval-customers, at least 5,000) with phasor
    reports, --share thieves over the seven patterns of `meter.theft`, plus honest customers
    with a holiday (5 %) or a new appliance (3 %); meterseal's ensemble (unsupervised), the
    seed's SOM score alone, the supervised model (5-fold out-of-fold), IsolationForest and
    LocalOutlierFactor on the same data: AUC, MAP@100/200, recall per pattern at a cut equal
    to the number of thieves.
  * Real data (`fraud_quality`): two tuning sources and three evaluation sources made from
    real household traces (the UCI house; fifteen CityLearn homes; five SimBench
    households), thieves injected by
    a script that shares no code with the detectors; every method on every source side
    by side.
Targets: on the simulator, ahead of both baselines on AUC and MAP@N and every pattern
recalled >= 90 %; on every evaluation source, those of `fraud_quality`.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from meterseal.bench.timing import Machine
from meterseal.fraud.data import Consumption
from meterseal.fraud.ensemble import unsupervised
from meterseal.fraud.evaluate import Comparison, compare
from meterseal.fraud.explain import Explanation, explain
from meterseal.fraud.fleet import FleetSpec, Labelled, fleet_chunks, labelled_fleet
from meterseal.fraud.metrics import Evaluation, ranking
from meterseal.fraud.pipeline import Analysis, Settings, analyse, analyse_chunks
from meterseal.fraud.report import comparison_table
from meterseal.meter.theft import TheftPlan
from meterseal.ui import TextTable, Verdict, print_table, print_written, progress_bar

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

FIRST_DAY = dt.date(2026, 9, 1)
RECALL_TARGET = 0.9
EXPLAINED = 1_000  # explanations written for the top of the ranking
# Each method's colour in every fraud figure (matplotlib's first five, in the simulator's row
# order): by row index, a run without the supervised row gave the baselines other colours.
METHOD_COLOURS = {
    "SOM correlation (seed)": "#1f77b4",
    "meterseal": "#ff7f0e",
    "meterseal (supervised)": "#2ca02c",
    "IsolationForest": "#d62728",
    "LocalOutlierFactor": "#9467bd",
}
TARGET_COLOUR = "#000000"  # black: red is IsolationForest's bars


@dataclass(frozen=True)
class ScaleResult:
    """The scale experiment's figures."""

    customers: int
    days: int
    generate_seconds: float  # producing the consumption (the stand-in for the store)
    map_seconds: float
    score_seconds: float  # per-day series and features, chunk by chunk
    rank_seconds: float  # ensemble, ranking and explanations
    peak_rss_mib: float

    @property
    def fraud_seconds(self) -> float:
        """The fraud job's own time (everything but producing the data)."""
        return self.map_seconds + self.score_seconds + self.rank_seconds


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class _Timed:
    """Wraps the chunk generator to count the seconds spent producing consumption."""

    def __init__(self, chunks: Iterator[Consumption]) -> None:
        self.chunks = chunks
        self.seconds = 0.0

    def __iter__(self) -> Iterator[Consumption]:
        while True:
            started = time.perf_counter()
            try:
                chunk = next(self.chunks)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - started
            yield chunk


def run_scale(console: Console, customers: int, days: int, seed: int = 7) -> ScaleResult:
    """Rank `customers` x `days` of 15-minute readings, streamed in chunks."""
    spec = FleetSpec(customers, FIRST_DAY, days, TheftPlan(share=0.0), seed=seed)
    settings = Settings(seed=seed)
    started = time.perf_counter()
    sample = next(fleet_chunks(spec))[1]
    generated = time.perf_counter() - started
    stream = _Timed(data for _, data, _ in fleet_chunks(spec))
    with progress_bar(console) as bar:
        task = bar.add_task(f"ranking {customers:,} customers", total=customers)
        started = time.perf_counter()
        analysis = analyse_chunks(sample, stream, settings, progress=lambda n: bar.advance(task, n))
        analysed = time.perf_counter() - started - stream.seconds
    started = time.perf_counter()
    _rank(analysis, FIRST_DAY, spec.region_names())
    ranked = time.perf_counter() - started
    map_seconds = analysis.timings.get("map", 0.0)
    return ScaleResult(
        customers,
        days,
        generated + stream.seconds,
        map_seconds,
        analysed - map_seconds,
        ranked,
        _peak_rss_mib(),
    )


def _rank(analysis: Analysis, first_day: dt.date, regions: tuple[str, ...]) -> list[Explanation]:
    scores = unsupervised(analysis.table)
    top = ranking(scores.score)[:EXPLAINED]
    names = [analysis.table.customers[i] for i in top.tolist()]
    return explain(analysis, scores, first_day, 1, regions, names)


@dataclass(frozen=True)
class QualityResult:
    """The quality experiment: the comparison and what it was run on."""

    comparison: Comparison
    fleet: Labelled
    analysis: Analysis


def run_quality(
    console: Console,
    customers: int,
    days: int,
    share: float,
    *,
    seed: int = 2026,
    with_supervised: bool = True,
) -> QualityResult:
    """The evaluation table on a labelled simulator fleet with phasor reports."""
    plan = TheftPlan(share=share, holiday_share=0.05, appliance_share=0.03, seed=seed)
    spec = FleetSpec(customers, FIRST_DAY, days, plan, seed=seed, phasor=True)
    with progress_bar(console) as bar:
        task = bar.add_task("labelled fleet", total=customers)
        fleet = labelled_fleet(spec, progress=lambda n: bar.advance(task, n))
        task = bar.add_task("analysing", total=customers)
        started = time.perf_counter()
        analysis = analyse(fleet.data, Settings(seed=seed), progress=lambda n: bar.advance(task, n))
        seconds = time.perf_counter() - started
    with console.status("evaluating") as status:
        comparison = compare(
            fleet.data,
            analysis,
            fleet.thief,
            fleet.patterns,
            dataset=f"simulated fleet (seed {seed}, {days} days, phasor reports)",
            seed=seed,
            with_supervised=with_supervised,
            analysis_seconds=seconds,
            step=lambda s: status.update(s),
        )
    return QualityResult(comparison, fleet, analysis)


def scale_table(result: ScaleResult, machine: Machine) -> TextTable:
    """The scale experiment as a table."""
    per_second = result.customers / max(result.fraud_seconds, 1e-9)
    rows = (
        ("customers x days", f"{result.customers:,} x {result.days}"),
        ("readings", f"{result.customers * result.days * 96:,}"),
        ("generating the consumption (not the job)", f"{result.generate_seconds:.1f} s"),
        ("training the SOM (MiniSom, first chunk's days)", f"{result.map_seconds:.1f} s"),
        ("per-day series + features (chunks)", f"{result.score_seconds:.1f} s"),
        (f"ensemble + ranking + top-{EXPLAINED:,} explanations", f"{result.rank_seconds:.1f} s"),
        ("fraud job total", f"{result.fraud_seconds:.1f} s ({per_second:,.0f} customers/s)"),
        ("peak resident memory (whole process)", f"{result.peak_rss_mib:,.0f} MiB"),
    )
    notes = (f"{machine.cpu}, {machine.cpus} logical CPUs, {machine.python}",)
    verdict = Verdict("reference figures: time and memory of one fraud job at this scale", None)
    return TextTable("Fraud: ranking at fleet scale", ("measure", "value"), rows, notes, verdict)


def quality_table(comparison: Comparison) -> TextTable:
    """The ranking-quality table with the targets, each met or not, and the verdict."""
    table = comparison_table(comparison)
    lines = verdict(comparison)
    target = (
        "ahead of IsolationForest and LocalOutlierFactor on AUC and MAP@N, "
        f"every pattern recalled ≥ {RECALL_TARGET:.0%}"
    )
    met = all(line.endswith("yes") for line in lines)
    return replace(table, notes=(*table.notes, *lines), verdict=Verdict(target, met))


def verdict(comparison: Comparison) -> list[str]:
    """The targets, each met or not, in words."""
    rows = {e.method: e for e in comparison.rows}
    ours = rows["meterseal"]
    out = []
    for base in ("IsolationForest", "LocalOutlierFactor"):
        other = rows[base]
        ahead = ours.auc > other.auc and all(ours.map_at[k] > other.map_at[k] for k in ours.map_at)
        out.append(f"ahead of {base} on AUC and MAP@N: {'yes' if ahead else 'NO'}")
    low = {p: r for p, r in ours.recall.items() if r < RECALL_TARGET}
    out.append(
        "every pattern recalled >= 90 %: "
        + ("yes" if not low else "NO (" + ", ".join(f"{p} {r:.0%}" for p, r in low.items()) + ")")
    )
    return out


def plot_fraud(quality: QualityResult, scale: ScaleResult | None, path: Path) -> Path:
    """AUC/MAP per method and recall per pattern per method (one PNG)."""
    fig = fraud_figure(quality.comparison, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def recall_panel(
    ax: Axes, rows: Sequence[Evaluation], patterns: Sequence[str], target: float
) -> Line2D:
    """Each method's recall per pattern as grouped bars on `ax`, and the dashed target line
    (returned, for a figure's legend)."""
    x = np.arange(len(patterns))
    width = 0.8 / max(len(rows), 1)
    for i, e in enumerate(rows):
        recall = [e.recall.get(p, np.nan) for p in patterns]
        ax.bar(x + i * width, recall, width, label=e.method, color=METHOD_COLOURS.get(e.method))
    line = ax.axhline(
        target,
        color=TARGET_COLOUR,
        linestyle="--",
        linewidth=1.2,
        label=f"recall target ({target:.0%})",
    )
    ax.set_xticks(x + width * (len(rows) - 1) / 2, patterns, rotation=20, fontsize=8)
    ax.set_ylim(0, 1.05)
    return line


def fraud_figure(c: Comparison, scale: ScaleResult | None) -> Figure:
    """The bench's figure: the run's customers, thieves and scale figures in its titles."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = c.rows
    fig = Figure(figsize=(14, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(2, 3))
    metrics = ("AUC", "MAP@100", "MAP@200")
    x = np.arange(len(metrics))
    width = 0.8 / len(rows)
    for i, e in enumerate(rows):
        values = [e.auc, e.map_at.get(100, np.nan), e.map_at.get(200, np.nan)]
        left.bar(x + i * width, values, width, label=e.method, color=METHOD_COLOURS.get(e.method))
    left.set_xticks(x + width * (len(rows) - 1) / 2, metrics)
    left.set_ylim(0, 1.05)
    left.set_title("Ranking quality")
    patterns = sorted({p for e in rows for p in e.recall})
    target = recall_panel(right, rows, patterns, RECALL_TARGET)
    right.set_title(f"Recall per pattern at a cut of {c.thieves:,} (the thieves)")
    # One legend for both panels, below them: inside either it covered bars (whichever corner).
    handles, labels = left.get_legend_handles_labels()
    fig.legend(
        [*handles, target],
        [*labels, str(target.get_label())],
        loc="outside lower center",
        ncol=len(rows) + 1,
        fontsize=8,
        frameon=False,
    )
    title = f"meterseal bench fraud — {c.customers:,} labelled customers ({c.thieves:,} thieves)"
    if scale is not None:
        title += (
            f"; ranking {scale.customers:,} x {scale.days} days: "
            f"{scale.fraud_seconds:.0f} s, {scale.peak_rss_mib:,.0f} MiB peak"
        )
    fig.suptitle(title, fontsize=10)
    return fig


def run_bench(
    console: Console,
    *,
    customers: int,
    days: int,
    eval_customers: int,
    share: float,
    with_supervised: bool,
    out: Path,
    trace: Path | None = None,
    source_customers: int | None = None,
) -> bool:
    """Every experiment, its tables and the pictures in `out`; targets met?

    `trace`: the real household trace the tuning and evaluation sources are made from
    (`fraud_sources`; None: not found, those sources are skipped and the verdict fails)."""
    from meterseal.bench.fraud_quality import (
        pattern_table,
        plot_sources,
        run_sources,
        summary_table,
    )
    from meterseal.fraud.plots import plot_customer, plot_umatrix
    from meterseal.fraud.report import hits

    load_before = os.getloadavg()
    scale = run_scale(console, customers, days) if customers else None
    quality = run_quality(console, eval_customers, days, share, with_supervised=with_supervised)
    sources = run_sources(console, trace, customers=source_customers) if trace else []
    machine = Machine.probe(None)
    quality_result = quality_table(quality.comparison)
    tables = [quality_result] if scale is None else [scale_table(scale, machine), quality_result]
    real = summary_table(sources)
    if sources:
        tables += [real, pattern_table(sources)]
    else:
        console.print("[red]no household trace (--trace): the real-data sources were skipped[/red]")
    for table in tables:
        print_table(console, table)
    console.print(
        f"machine: {machine.cpu}, {machine.cpus} logical CPUs, {machine.python}; load average "
        f"(1/5/15 min) before {_load(load_before)}, after {_load(machine.load)}"
    )
    print_written(console, "plot", plot_fraud(quality, scale, out / "fraud-bench.png"))
    if sources:
        print_written(console, "sources plot", plot_sources(sources, out / "fraud-sources.png"))
    analysis = quality.analysis
    umatrix = plot_umatrix(analysis.shape_map, hits(analysis), out / "fraud-umatrix.png")
    print_written(console, "U-matrix", umatrix)
    example = _example(quality)
    if example is not None:
        row, why = example
        data = quality.fleet.data
        picture = out / "fraud-explain.png"
        path = plot_customer(data, analysis.daily, row, why, picture, analysis.shape_map.typical)
        print_written(console, f"explained: {why.customer} ({why.text()})", path)
    sim_met = bool(quality_result.verdict and quality_result.verdict.met)
    return sim_met and bool(sources) and bool(real.verdict and real.verdict.met)


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.1f}" for x in load)


def _example(quality: QualityResult) -> tuple[int, Explanation] | None:
    """The highest-ranked thief of the reversed-day pattern (the one a correlation sees)."""
    fleet, analysis = quality.fleet, quality.analysis
    scores = unsupervised(analysis.table)
    data = fleet.data
    for row in ranking(scores.score).tolist():
        if fleet.patterns[row] == "reversed":
            (why,) = explain(
                analysis, scores, data.first_day, 1, data.regions, [data.customers[row]]
            )
            return row, why
    return None
