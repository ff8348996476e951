"""`bench fraud` on data the detectors were not designed on: every source side by side.

Sources (`fraud_sources`): two tuning sources (the UCI house's early days; fifteen CityLearn
homes) and three evaluation sources made from real household traces (two from the UCI
house's later days, one from five SimBench households; no detector constant was chosen on
them), thieves injected by `fraud_inject` (eight patterns, random onsets). Each goes the
user's way (UTC instants cut into local days of its zone) and is ranked by meterseal's
unsupervised ensemble, the seed's SOM score, and IsolationForest and LocalOutlierFactor on
per-customer features. Targets, on
every evaluation source: AUC and MAP@100 >= 0.95, ahead of both baselines on AUC, MAP@50
and MAP@100, every pattern recalled >= 85 % at a cut equal to the number of thieves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from meterseal.bench.fraud_sources import (
    SOURCES,
    Source,
    SourceSpec,
    Trace,
    build,
    default_citylearn,
    default_simbench,
    load_citylearn,
    load_simbench,
    load_trace,
)
from meterseal.fraud.evaluate import Comparison, compare
from meterseal.fraud.pipeline import Settings, analyse
from meterseal.ui import TextTable, Verdict, progress_bar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

AUC_TARGET = 0.95
MAP_TARGET = 0.95
PATTERN_TARGET = 0.85
N = (50, 100)
BASELINES = ("IsolationForest", "LocalOutlierFactor")


@dataclass(frozen=True)
class SourceResult:
    """One source's comparison and what it is."""

    spec: SourceSpec
    comparison: Comparison


def run_source(console: Console, source: Source, seed: int) -> Comparison:
    """Analyse one labelled source and compare every method on it."""
    with progress_bar(console) as bar:
        task = bar.add_task(f"{source.spec.name}", total=len(source.data.customers))
        started = time.perf_counter()
        analysis = analyse(
            source.data, Settings(seed=seed), progress=lambda n: bar.advance(task, n)
        )
        seconds = time.perf_counter() - started
    return compare(
        source.data,
        analysis,
        source.thief,
        source.patterns,
        dataset=source.spec.describe(),
        seed=seed,
        with_supervised=False,
        analysis_seconds=seconds,
        n=N,
    )


def _load(spec: SourceSpec, trace: Path, vendored: dict[str, Path | None]) -> Trace | None:
    """The trace a spec is made from (None: a vendored trace not in this checkout)."""
    if spec.trace == "uci":
        return load_trace(trace)
    path = vendored[spec.trace]
    if path is None:
        return None
    return load_simbench(path) if spec.trace == "simbench" else load_citylearn(path)


def run_sources(
    console: Console,
    trace: Path,
    *,
    customers: int | None = None,
    seed: int = 2026,
    simbench: Path | None = None,
    citylearn: Path | None = None,
    only: tuple[str, ...] = (),
) -> list[SourceResult]:
    """Build and evaluate every source (`customers`: fewer per source, for a quick run;
    `only`: these sources by name). SimBench's and CityLearn's sources need their vendored
    files (`simbench`, `citylearn`: by default the checkout's copies) and are left out
    without them."""
    vendored = {
        "simbench": simbench or default_simbench(),
        "citylearn": citylearn or default_citylearn(),
    }
    traces: dict[str, Trace | None] = {}
    out = []
    for spec in SOURCES:
        if only and spec.name not in only:
            continue
        if spec.trace not in traces:
            with console.status(f"reading the {spec.trace} trace"):
                traces[spec.trace] = _load(spec, trace, vendored)
        source_trace = traces[spec.trace]
        if source_trace is None:
            console.print(f"[yellow]{spec.name} left out: its {spec.trace} file not found[/yellow]")
            continue
        spec = replace(spec, customers=customers) if customers else spec
        with console.status(f"building {spec.name} (households, thieves, days of {spec.tz})"):
            source = build(spec, source_trace)
        out.append(SourceResult(spec, run_source(console, source, seed)))
    return out


def _f(value: float) -> str:
    return f"{value:.3f}"


def summary_table(results: list[SourceResult]) -> TextTable:
    """AUC, MAP@50, MAP@100 and the weakest pattern of every method on every source."""
    rows = []
    for r in results:
        for e in r.comparison.rows:
            worst = min(e.recall.items(), key=lambda kv: kv[1]) if e.recall else ("", 0.0)
            rows.append(
                (
                    f"{r.spec.name} ({r.spec.role})",
                    e.method,
                    _f(e.auc),
                    *(_f(e.map_at[k]) for k in N),
                    f"{worst[0]} {worst[1]:.0%}",
                )
            )
    notes = tuple(r.spec.describe() for r in results)
    lines, met = targets(results)
    target = (
        f"every evaluation source: AUC and MAP@100 >= {AUC_TARGET}, ahead of both baselines "
        f"on AUC and MAP@N, every pattern recalled >= {PATTERN_TARGET:.0%}"
    )
    return TextTable(
        "Fraud on real household data (thieves injected), all sources side by side",
        ("source", "method", "AUC", *(f"MAP@{k}" for k in N), "weakest pattern"),
        tuple(rows),
        (*notes, *lines),
        Verdict(target, met),
    )


def pattern_table(results: list[SourceResult]) -> TextTable:
    """Recall of each pattern at a cut equal to the number of thieves, per source and method."""
    patterns = sorted({p for r in results for e in r.comparison.rows for p in e.recall})
    rows = []
    for r in results:
        for e in r.comparison.rows:
            cells = (f"{e.recall[p]:.0%}" if p in e.recall else "-" for p in patterns)
            rows.append((r.spec.name, e.method, *cells))
    notes = tuple(
        f"{r.spec.name}: {r.comparison.customers} customers, {r.comparison.thieves} thieves "
        f"(cut {r.comparison.thieves})"
        for r in results
    )
    return TextTable(
        "Fraud on real household data: recall per pattern at top-k (k = thieves)",
        ("source", "method", *patterns),
        tuple(rows),
        notes,
    )


def targets(results: list[SourceResult]) -> tuple[list[str], bool]:
    """Each evaluation source's targets in words, and whether all are met."""
    lines = []
    met = bool(results)
    for r in results:
        if r.spec.role != "evaluation":
            continue
        rows = {e.method: e for e in r.comparison.rows}
        ours = rows["meterseal"]
        checks = {
            f"AUC {ours.auc:.3f} >= {AUC_TARGET}": ours.auc >= AUC_TARGET,
            f"MAP@100 {ours.map_at[100]:.3f} >= {MAP_TARGET}": ours.map_at[100] >= MAP_TARGET,
        }
        for base in BASELINES:
            other = rows[base]
            ahead = ours.auc > other.auc and all(ours.map_at[k] > other.map_at[k] for k in N)
            checks[f"ahead of {base}"] = ahead
        low = {p: v for p, v in ours.recall.items() if v < PATTERN_TARGET}
        checks[
            "every pattern >= 85 %"
            + ("" if not low else " (" + ", ".join(f"{p} {v:.0%}" for p, v in low.items()) + ")")
        ] = not low
        for what, ok in checks.items():
            lines.append(f"{r.spec.name}: {what}: {'yes' if ok else 'NO'}")
            met = met and ok
    return lines, met


def plot_sources(results: list[SourceResult], path: Path) -> Path:
    """Recall per pattern per method, one panel per source (one PNG)."""
    fig = sources_figure(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def sources_figure(results: list[SourceResult]) -> Figure:
    """One panel per source (two a row): each method's recall per pattern at a cut equal to
    the thieves, the target line, and meterseal's AUC and MAP@100 in the panel's title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from meterseal.bench.fraud import recall_panel

    rows_of_panels = max(1, math.ceil(len(results) / 2))
    fig = Figure(figsize=(14, 4.2 * rows_of_panels + 1.0), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows_of_panels, 2, squeeze=False).ravel()
    for ax in grid[len(results) :]:
        fig.delaxes(ax)  # an odd number of sources: no empty panel
    # The same patterns, in the same order, on every panel (a source may lack one).
    patterns = sorted({p for r in results for e in r.comparison.rows for p in e.recall})
    target = None
    for ax, r in zip(grid, results, strict=False):
        target = recall_panel(ax, r.comparison.rows, patterns, PATTERN_TARGET)
        ax.set_title(_panel_title(r), fontsize=10)
    if target is not None:
        # One legend for every panel, below them, as the simulator's figure has it.
        handles = [*grid[0].containers, target]  # the methods' bars, then the target line
        labels = [str(h.get_label()) for h in handles]
        fig.legend(
            handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False
        )
    fig.suptitle(
        "meterseal bench fraud — real household data (thieves injected): "
        "recall per pattern at a cut equal to the number of thieves",
        fontsize=10,
    )
    return fig


def _panel_title(r: SourceResult) -> str:
    """The source (the tuning one marked), meterseal's AUC and MAP@100, and the cut."""
    name = f"{r.spec.name} (tuning)" if r.spec.role == "tuning" else r.spec.name
    ours = next((e for e in r.comparison.rows if e.method == "meterseal"), None)
    figures = (
        f"meterseal AUC {ours.auc:.3f}, MAP@100 {ours.map_at.get(100, math.nan):.3f}"
        if ours
        else "no meterseal row"
    )
    c = r.comparison
    return f"{name}: {figures}\n{c.customers:,} customers, cut {c.thieves:,} (the thieves)"
