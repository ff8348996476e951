"""The `bench crypto` figure: suites against their primitive bound, and experiment 3.1."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from meterseal.bench.crypto import BenchResult, SizeBench, SuiteBench

US = 1e6
BAR_WIDTH = 0.26
COLORS = {"seal": "#8da0cb", "open": "#fc8d62", "bound": "#66c2a5"}
SIZE_STYLE = {
    "rsa_encrypt": ("RSA-2048 encrypt (OAEP, 190-B blocks)", "o-", "#e7298a"),
    "rsa_decrypt": ("RSA-2048 decrypt (OAEP, 190-B blocks)", "s-", "#7570b3"),
    "sha256": ("SHA-256", "^-", "#1b9e77"),
    "sha512": ("SHA-512", "v-", "#d95f02"),
}


def _suite_panel(ax: Axes, suites: tuple[SuiteBench, ...], target: float) -> None:
    """Grouped bars (log scale): seal, open and the primitive bound per suite."""
    names = [s.suite for s in suites]
    series = {
        "seal": [s.seal.median * US for s in suites],
        "open": [s.open.median * US for s in suites],
        "bound": [s.bound * US for s in suites],
    }
    labels = {"seal": "seal", "open": "open", "bound": "primitive bound of open"}
    for i, (key, values) in enumerate(series.items()):
        xs = [x + (i - 1) * BAR_WIDTH for x in range(len(names))]
        ax.bar(xs, values, BAR_WIDTH, label=labels[key], color=COLORS[key])
    top = max(max(v) for v in series.values())
    for x, suite in enumerate(suites):
        mark = "" if suite.verdict == "no target" else f"\n{suite.verdict}"
        peak = max(suite.open.median, suite.bound) * US
        ax.annotate(
            f"{suite.ratio:.0%}{mark}", (x + BAR_WIDTH / 2, peak), textcoords="offset points",
            xytext=(0, 4), ha="center", va="bottom", fontsize=9, fontweight="bold",
        )  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(top=top * 4)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("µs per packet (one core, log scale)")
    ax.set_title(f"Seal / open per suite; label = bound / open (target ≥ {target:.0%})")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)


def _size_panel(ax: Axes, sizes: tuple[SizeBench, ...]) -> None:
    """Time against input size, log-log, one line per algorithm."""
    xs = [p.size for p in sizes]
    for op, (label, style, color) in SIZE_STYLE.items():
        ax.plot(xs, [p.timings[op].median * US for p in sizes], style, label=label, color=color)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("input size (bytes)")
    ax.set_ylabel("µs per input (one core)")
    ax.set_title("SGX paper exp. 3.1 without enclave: time vs input size")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=9)


def plot_bench(result: BenchResult, path: Path) -> Path:
    """Write the two-panel PNG to `path` (Agg backend, no display needed)."""
    from meterseal.bench.crypto import TARGET

    fig = Figure(figsize=(14, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _suite_panel(left, result.suites, TARGET)
    _size_panel(right, result.sizes)
    m = result.machine
    fig.suptitle(
        f"meterseal bench crypto — {m.cpu}, {m.python}, cryptography {m.cryptography}",
        fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
