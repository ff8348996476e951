"""The table and plot of `meterseal bench cascadb`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console

from meterseal.bench.cascadb import OPERATIONS, TARGET, CascadbPlan, SystemResult, agree, run_all
from meterseal.bench.timing import Machine, usec
from meterseal.ui import TextTable, Verdict, print_table, print_written, progress_bar

PLOT_NAME = "bench-cascadb.png"
LABELS = {
    "insert": "insert (per reading, {batch} a statement)",
    "point": "point select (primary key)",
    "range": "range scan: one meter's month ({readings} readings)",
    "join": "merge join: customers x all readings, counted",
}


@dataclass
class CascadbBench:
    """The systems' results, whether their answers agree, and the machine."""

    plan: CascadbPlan
    systems: list[SystemResult]
    agreed: bool
    machine: Machine

    def by_name(self, name: str) -> SystemResult:
        """One system's result."""
        return next(s for s in self.systems if s.name == name)

    def ratio(
        self, operation: str, sql: str = "CascaDB on the KVS", bare: str = "bare KVS"
    ) -> float:
        """CascaDB's time over the bare store's for one operation."""
        return self.by_name(sql).seconds[operation] / self.by_name(bare).seconds[operation]


def table(bench: CascadbBench) -> TextTable:
    """Microseconds per operation of every system, CascaDB over its bare store."""
    names = [s.name for s in bench.systems]
    rows = []
    for operation in OPERATIONS:
        label = LABELS[operation].format(batch=bench.plan.batch, readings=bench.plan.readings)
        cells = [
            usec(s.seconds[operation]) if operation in s.seconds else "-" for s in bench.systems
        ]
        rows.append(
            (
                label,
                *cells,
                f"{bench.ratio(operation):.2f}",
                f"{bench.ratio(operation, 'CascaDB in memory', 'bare memory'):.1f}",
            )
        )
    met = bench.ratio("range") <= TARGET and bench.ratio("insert") <= TARGET
    notes = [
        f"{bench.plan.meters} meters x {bench.plan.readings} readings; "
        f"{bench.plan.points} point selects, {bench.plan.scans} scans and joins; "
        "CascaDB and its bare store alternate step by step",
        "the KVS: memory nodes, rep:1 (sealing and catalog, no disks); PostgreSQL at "
        "MS_POSTGRES_URL over loopback",
        *(f"{s.name}: {s.note}" for s in bench.systems if s.note),
        "answers of every system agree" if bench.agreed else "ANSWERS DIFFER between systems",
        bench.machine.line(),
    ]
    return TextTable(
        "CascaDB: microseconds per operation beside the bare KVS, memory and PostgreSQL",
        ("operation", *(f"{n} µs" for n in names), "KVS: SQL / bare", "memory: SQL / bare"),
        rows,
        tuple(notes),
        Verdict(f"range scan and inserts on the KVS within {TARGET}x of the bare KVS", met),
    )


def plot(bench: CascadbBench, path: Path) -> Path:
    """Operations per second, log scale, one group of bars per operation."""
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(bench.systems)
    for i, system in enumerate(bench.systems):
        rates = [1 / system.seconds[o] if o in system.seconds else 0 for o in OPERATIONS]
        ax.bar([x + i * width for x in range(len(OPERATIONS))], rates, width, label=system.name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(OPERATIONS))], list(OPERATIONS))
    ax.set_yscale("log")
    ax.set_ylabel("operations per second (log)")
    ax.legend(fontsize=8)
    m = bench.machine
    ax.set_title(f"meterseal bench cascadb — {m.cpu}, {m.cpus} CPUs, {m.python}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def run_bench(console: Console, plan: CascadbPlan, out_dir: Path) -> CascadbBench:
    """Measure, print the table, write the plot."""
    with progress_bar(console) as bar:
        task = bar.add_task("bench cascadb", total=plan.steps())

        def step(what: str) -> None:
            bar.update(task, advance=1, description=what)

        systems = run_all(plan, step)
    bench = CascadbBench(plan, systems, agree(systems), Machine.probe(None))
    print_table(console, table(bench))
    print_written(console, "plot", plot(bench, out_dir / PLOT_NAME))
    return bench
