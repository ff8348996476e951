"""The `bench trusted-overhead` figure: the paper's Figure 2(a)-(c) layout, inside vs outside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from meterseal.bench.crypto import PAPER_SGX_FACTOR, SIZE_OPS
from meterseal.bench.plot import SIZE_STYLE

if TYPE_CHECKING:
    from meterseal.bench.trusted import OverheadResult

US = 1e6
PANELS = (
    ("(a) RSA-2048 (OAEP, 190-B blocks)", ("rsa_encrypt", "rsa_decrypt")),
    ("(b) SHA-256", ("sha256",)),
    ("(c) SHA-512", ("sha512",)),
)


def _duration(value: float, _: object) -> str:
    return f"{value / 1000:g} ms" if value >= 1000 else f"{value:g} µs"


def _size(value: float, _: object) -> str:
    return f"{value / 1024:g} KiB" if value >= 1024 else f"{value:g} B"


def _panel(ax: Axes, result: OverheadResult, title: str, ops: tuple[str, ...]) -> None:
    """Time against input size, log-log: outside solid, inside dashed, one colour per op."""
    for op in ops:
        points = sorted((p for p in result.points if p.op == op), key=lambda p: p.size)
        xs = [p.size for p in points]
        _, marker, color = SIZE_STYLE[op]
        name = SIZE_OPS[op]
        ax.plot(xs, [p.outside.median * US for p in points], marker, color=color, label=name)
        ax.plot(
            xs,
            [p.inside.median * US for p in points],
            marker[0] + "--",
            color=color,
            alpha=0.7,
            label=f"{name}, trusted worker ({result.ratio(op):.2f}x; paper SGX "
            f"{PAPER_SGX_FACTOR[op]}x)",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({p.size for p in result.points}))
    ax.xaxis.set_major_formatter(FuncFormatter(_size))
    ax.yaxis.set_major_formatter(FuncFormatter(_duration))
    times = [t for p in result.points if p.op in ops for t in (p.outside.median, p.inside.median)]
    if max(times) < 10 * min(times):  # under a decade there is no major tick to read
        ax.yaxis.set_minor_formatter(FuncFormatter(_duration))
        ax.tick_params(axis="y", which="minor", labelsize=7)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("input size")
    ax.set_ylabel("time per input")
    ax.set_title(title)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")


def plot_overhead(result: OverheadResult, path: Path) -> Path:
    """Write the three-panel PNG to `path` (Agg backend, no display needed)."""
    fig = Figure(figsize=(15, 5), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (title, ops) in zip(fig.subplots(1, 3), PANELS, strict=True):
        _panel(ax, result, title, ops)
    m = result.machine
    fig.suptitle(
        "meterseal bench trusted-overhead — SGX paper exp. 3.1 inside (dashed) vs outside "
        f"(solid) a trusted worker; simulated attestation, no enclave — {m.cpu}, {m.python}",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
