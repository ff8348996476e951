"""The `bench crypto` figure: open against its primitive bound, and experiment 3.1."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

if TYPE_CHECKING:
    from meterseal.bench.crypto import BenchResult, SizeBench, SuiteBench

US = 1e6
SEGMENTS = (
    ("verify", "signature verify", "#8da0cb"),
    ("key", "key agreement / KEM (pq: whole HPKE open)", "#66c2a5"),
    ("aead", "AEAD decrypt", "#a6d854"),
    ("rest", "rest of open (Python, COSE, caches)", "#d9d9d9"),
)
SIZE_STYLE = {
    "rsa_encrypt": ("RSA-2048 encrypt (OAEP, 190-B blocks)", "o-", "#e7298a"),
    "rsa_decrypt": ("RSA-2048 decrypt (OAEP, 190-B blocks)", "s-", "#7570b3"),
    "sha256": ("SHA-256", "^-", "#1b9e77"),
    "sha512": ("SHA-512", "v-", "#d95f02"),
}


def _shares(suite: SuiteBench) -> dict[str, float]:
    """Each primitive's time, and the rest, as a share of the measured open time."""
    parts = {
        "verify": suite.verify.median,
        "key": suite.key.median,
        "aead": suite.aead.median if suite.aead else 0.0,
    }
    parts["rest"] = max(0.0, suite.open.median - sum(parts.values()))
    return {name: value / suite.open.median for name, value in parts.items()}


def _caption(suite: SuiteBench) -> str:
    return (
        f"{suite.ratio:.0%} {'' if suite.verdict == 'no target' else suite.verdict}\n"
        f"open {suite.open.median * US:,.0f} µs = {suite.open.per_second:,.0f}/s, "
        f"seal {suite.seal.median * US:,.0f} µs = {suite.seal.per_second:,.0f}/s"
    )


def _suite_panel(ax: Axes, suites: tuple[SuiteBench, ...], target: float) -> None:
    """One bar per suite: its open time split into primitives and the rest (100% = open)."""
    rows = list(reversed(suites))
    left = [0.0] * len(rows)
    for key, label, color in SEGMENTS:
        widths = [_shares(s)[key] * 100 for s in rows]
        ax.barh(range(len(rows)), widths, 0.5, left=left, label=label, color=color)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, suite in enumerate(rows):
        ax.text(2, y + 0.3, _caption(suite), va="bottom", fontsize=8.5)
    ax.axvline(target * 100, color="#d62728", linestyle="--", linewidth=1.2)
    ax.text(target * 100, len(rows) - 0.35, f" target {target:.0%}", color="#d62728", fontsize=9)
    ax.set_yticks(range(len(rows)), [s.suite for s in rows])
    ax.set_ylim(-0.5, len(rows) - 0.1)
    ax.set_xlim(0, max(105.0, max(left) + 3))
    ax.set_xlabel("share of one open (%); label = primitive bound / open")
    ax.set_title("Open against its primitive bound, per suite (one core)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8.5)


def _duration(value: float, _: object) -> str:
    """Axis label for a time in µs."""
    if value >= 1000:
        return f"{value / 1000:g} ms"
    return f"{value:g} µs"


def _size(value: float, _: object) -> str:
    """Axis label for a size in bytes."""
    return f"{value / 1024:g} KiB" if value >= 1024 else f"{value:g} B"


def _size_panel(ax: Axes, sizes: tuple[SizeBench, ...]) -> None:
    """Time against input size, log-log, one line per algorithm."""
    xs = [p.size for p in sizes]
    for op, (label, style, color) in SIZE_STYLE.items():
        ax.plot(xs, [p.timings[op].median * US for p in sizes], style, label=label, color=color)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(FuncFormatter(_size))
    ax.yaxis.set_major_formatter(FuncFormatter(_duration))
    ax.set_xlabel("input size (bytes)")
    ax.set_ylabel("time per input (one core)")
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
