"""The figure of `meterseal bench kvs`: Fig. 5 bars, Fig. 6 lines, failure and codec bars."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from meterseal.bench.kvs_report import CODEC_ROWS, size_text

if TYPE_CHECKING:
    from meterseal.bench.kvs import KvsResult

COLORS = {"rep:3": "#1b9e77", "ec:6+2": "#d95f02", "hybrid:6+2": "#7570b3"}


def _color(policy: str) -> str:
    return COLORS.get(policy, "#666666")


def _storage(ax: Axes, result: KvsResult) -> None:
    """Fig. 5: bytes held per byte stored, one bar group per object size."""
    sizes = result.plan.storage_sizes
    policies = result.plan.policies
    width = 0.8 / len(policies)
    for j, policy in enumerate(policies):
        rows = {r.size: r for r in result.storage if r.policy == policy}
        xs = [i + j * width for i in range(len(sizes))]
        ax.bar(xs, [rows[s].held / s for s in sizes], width, label=policy, color=_color(policy))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [size_text(s) for s in sizes])
    ax.set_ylabel("bytes on the nodes per object byte")
    ax.set_title("Fig. 5: raw storage per policy")
    ax.legend(fontsize=8)


def _rates(ax: Axes, result: KvsResult) -> None:
    """Fig. 6: operations per second against object size, log-log."""
    for policy in result.plan.policies:
        for op, style in (("put", "o--"), ("get", "s-")):
            rows = sorted(
                (r for r in result.rates if r.policy == policy and r.op == op),
                key=lambda r: r.size,
            )
            ax.plot(
                [r.size for r in rows],
                [max(r.per_second, 1e-3) for r in rows],
                style,
                color=_color(policy),
                label=f"{policy} {op}",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(result.plan.sizes))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: size_text(int(v))))
    ax.set_xlabel("object size")
    ax.set_ylabel("operations per second")
    ax.set_title(f"Fig. 6: reads and writes, {result.plan.clients} client processes")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def _failure(ax: Axes, result: KvsResult) -> None:
    """Read time per object healthy and with a node dead, and the repair time."""
    rows = result.failures
    xs = range(len(rows))
    n = result.plan.failure_objects
    ax.bar(
        [x - 0.2 for x in xs], [r.healthy_read * 1000 / n for r in rows], 0.2, label="read, healthy"
    )
    ax.bar(list(xs), [r.degraded_read * 1000 / n for r in rows], 0.2, label="read, node dead")
    ax.bar([x + 0.2 for x in xs], [r.repair_seconds * 1000 / n for r in rows], 0.2,
           label="repair per object")  # fmt: skip
    ax.set_xticks(list(xs), [r.policy for r in rows])
    ax.set_ylabel("ms per object")
    ax.set_title("Failure run: one of the nodes killed, then repaired")
    ax.legend(fontsize=8)


def _codec(ax: Axes, result: KvsResult) -> None:
    """Milliseconds of the store's put and get against each primitive alone."""
    labels = [label.split(" (")[0] for _, label in CODEC_ROWS]
    values = [result.codec.timings[key].median * 1000 for key, _ in CODEC_ROWS]
    ax.barh(range(len(values)), values, color="#8da0cb")
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    put, get = result.codec.ratio("put", "client"), result.codec.ratio("get", "client")
    ax.set_title(
        f"{size_text(result.codec.size)}: gateway put {put:.1f}x, get {get:.1f}x the primitives"
    )


def plot_kvs(result: KvsResult, path: Path) -> Path:
    """Write the four-panel PNG to `path` (Agg backend)."""
    fig = Figure(figsize=(14, 10), layout="constrained")
    FigureCanvasAgg(fig)
    (a, b), (c, d) = fig.subplots(2, 2)
    _storage(a, result)
    _rates(b, result)
    _failure(c, result)
    _codec(d, result)
    m = result.machine
    fig.suptitle(f"meterseal bench kvs — {m.cpu}, {m.cpus} CPUs, {m.python}", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
