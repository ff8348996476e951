"""Pictures of the fraud job (PNG, Agg backend): a customer's days, the SOM U-matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from meterseal.fraud.daily import Daily
from meterseal.fraud.data import Consumption, FraudDataError
from meterseal.fraud.explain import Explanation
from meterseal.fraud.som import ShapeMap

F64 = npt.NDArray[np.float64]


def _save(fig: Figure, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:  # ValueError: a suffix matplotlib cannot write
        raise FraudDataError(f"cannot write {path}: {exc}") from None
    return path


def plot_customer(
    data: Consumption,
    daily: Daily,
    row: int,
    explanation: Explanation,
    path: Path,
    typical: F64 | None = None,
) -> Path:
    """The customer's days against its regular behaviour, and its daily evidence over time."""
    energy = np.nan_to_num(data.energy[row])
    region = daily.in_region[row]
    regular = energy[region].mean(0) if region.any() else np.nanmedian(energy, axis=0)
    flagged = {(d - data.first_day).days // data.period_days for d in explanation.days}
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))
    hours = np.arange(data.slots) * 24 * data.period_days / data.slots
    for p in range(data.periods):
        if np.isnan(daily.total[row, p]):
            continue
        bad = p in flagged
        top.plot(
            hours,
            energy[p],
            color="#d62728" if bad else "#7f7f7f",
            alpha=0.55 if bad else 0.25,
            linewidth=1.0,
        )
    top.plot(hours, regular, color="black", linewidth=2.5, label="regular behaviour (SOM region)")
    if typical is not None and data.slots % len(typical) == 0:
        usual = np.repeat(typical, data.slots // len(typical))  # hourly shape on every slot
        scale = float(np.nanstd(regular)) or 1.0
        top.plot(
            hours,
            np.nanmean(regular) + usual * scale,
            color="#1f77b4",
            linestyle="--",
            linewidth=1.5,
            label="the population's usual shape (scaled)",
        )
    top.plot([], [], color="#7f7f7f", label="a day that keeps the pattern")
    top.plot([], [], color="#d62728", label="a day that breaks it")
    unit = "day" if data.period_days == 1 else "week"
    top.set_xlabel(f"hour of the {unit}" if unit == "day" else "day of the week x 24 h")
    top.set_ylabel("kWh per reading")
    top.set_title(
        f"{explanation.customer}: rank {explanation.rank}, score {explanation.score:.1f} — "
        f"{explanation.pattern}"
    )
    top.legend(fontsize=8, loc="upper left")
    periods = np.arange(data.periods)
    bottom.bar(periods, np.nan_to_num(daily.total[row]), color="#9ecae1", label=f"kWh per {unit}")
    for p in flagged:
        bottom.bar([p], [np.nan_to_num(daily.total[row, p])], color="#d62728")
    twin = bottom.twinx()
    twin.plot(periods, daily.corr[row], "k.-", label="correlation with regular behaviour")
    twin.set_ylim(-1.05, 1.05)
    twin.set_ylabel("correlation")
    if explanation.onset is not None:
        start = (explanation.onset - data.first_day).days // data.period_days
        bottom.axvline(start - 0.5, color="#d62728", linestyle="--", label="onset")
    bottom.set_xlabel(f"{unit} since {data.first_day}")
    bottom.set_ylabel(f"kWh per {unit}")
    bottom.set_title(explanation.text(), fontsize=9)
    bottom.legend(fontsize=8, loc="lower left")
    twin.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_umatrix(smap: ShapeMap, hits: F64, path: Path) -> Path:
    """The SOM's U-matrix (distance between neighbouring nodes) beside each node's shape."""
    fig = Figure(figsize=(13, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    image = left.imshow(smap.umatrix(), cmap="viridis", origin="upper")
    fig.colorbar(image, ax=left, label="mean distance to neighbours (standardised shapes)")
    for node in range(smap.nodes):
        r, c = divmod(node, smap.cols)
        left.text(c, r, f"{int(hits[node])}", ha="center", va="center", color="w", fontsize=7)
    left.set_title("U-matrix (numbers: days mapped to each node)")
    left.set_xticks([])
    left.set_yticks([])
    slots = smap.weights.shape[1]
    for node in range(smap.nodes):
        r, c = divmod(node, smap.cols)
        x = c + np.linspace(0.05, 0.95, slots)
        y = r + 0.5 - smap.weights[node] / (2.5 * max(np.abs(smap.weights).max(), 1e-9))
        right.plot(x, y, color="#1f77b4", linewidth=0.9)
    right.set_xlim(0, smap.cols)
    right.set_ylim(smap.rows, 0)
    right.set_xticks([])
    right.set_yticks([])
    right.set_title("Each node's daily shape (standardised, hour 0 to 24 left to right)")
    fig.suptitle("Self-organizing map of daily load shapes (MiniSom)")
    return _save(fig, path)
