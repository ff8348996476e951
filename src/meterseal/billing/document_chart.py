"""The bill document's consumption charts: laid out once, drawn as SVG (HTML) and in the PDF.

Drawn by hand rather than with matplotlib: a few dozen stacked bars, ticks and labels, laid
out here in points (`BarChart`), so that the HTML's inline SVG and the PDF's vector drawing
show the same shapes from the same figures, with no plotting library in the install that
renders bills and nothing but the signed figures in the markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from meterseal.billing.document import DayUse

WIDTH = 640.0
HEIGHT = 210.0
LEFT, RIGHT, TOP, BOTTOM = 52.0, 10.0, 26.0, 30.0  # margins around the plot area
MEASURED = "#2a6f97"
ESTIMATED = "#f4a261"
AXIS = "#555555"
GRID = "#dddddd"
MAX_LABELS = 16  # x labels, at most


@dataclass(frozen=True, slots=True)
class Box:
    """A filled rectangle, in points from the chart's top left corner."""

    x: float
    y: float
    width: float
    height: float
    colour: str


@dataclass(frozen=True, slots=True)
class Label:
    """A text at (x, y) (its baseline), anchored at its start, middle or end."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class BarChart:
    """A laid-out chart: bars, grid lines (y), labels, and a legend of the colours used."""

    title: str
    width: float
    height: float
    boxes: tuple[Box, ...]
    grid: tuple[float, ...]
    labels: tuple[Label, ...]
    legend: tuple[tuple[str, str], ...]  # (colour, meaning)


def _step(top_kwh: float) -> float:
    """A tick step of 1, 2 or 5 x 10^k giving at most five ticks up to `top_kwh`."""
    if top_kwh <= 0:
        return 1.0
    raw = top_kwh / 5
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _kwh(wh: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{wh / 1000:,.{decimals}f}"


def bar_chart(title: str, bars: Sequence[tuple[int, int]], names: Sequence[str]) -> BarChart:
    """Stacked bars of (measured Wh, estimated Wh), one per name, on a kWh axis."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    step = _step(max((m + e for m, e in bars), default=0) / 1000)
    top_kwh = step * max(1, math.ceil(max((m + e for m, e in bars), default=0) / 1000 / step))
    scale = plot_h / (top_kwh * 1000)  # points per Wh
    slot = plot_w / max(1, len(bars))
    boxes: list[Box] = []
    labels: list[Label] = [Label(LEFT - 6, TOP - 10, "kWh", "end")]
    every = max(1, math.ceil(len(names) / MAX_LABELS))
    for i, ((measured, estimated), name) in enumerate(zip(bars, names, strict=True)):
        x = LEFT + i * slot + slot * 0.1
        low = base - measured * scale
        if measured:
            boxes.append(Box(x, low, slot * 0.8, measured * scale, MEASURED))
        if estimated:
            boxes.append(Box(x, low - estimated * scale, slot * 0.8, estimated * scale, ESTIMATED))
        if i % every == 0:
            labels.append(Label(x + slot * 0.4, base + 14, name))
    ticks = [k * step for k in range(round(top_kwh / step) + 1)]
    grid = tuple(base - t * 1000 * scale for t in ticks)
    labels += [
        Label(LEFT - 6, y + 3, _kwh(t * 1000, step), "end")
        for t, y in zip(ticks, grid, strict=True)
    ]
    legend = [(MEASURED, "measured")]
    if any(e for _, e in bars):
        legend.append((ESTIMATED, "estimated (gaps filled)"))
    return BarChart(title, WIDTH, HEIGHT, tuple(boxes), grid, tuple(labels), tuple(legend))


def daily_chart(days: Sequence[DayUse]) -> BarChart:
    """Energy per UTC day, estimated stacked on measured; labelled by day of the month."""
    return bar_chart(
        "Consumption per day (UTC)",
        [(d.measured_wh, d.estimated_wh) for d in days],
        [str(d.day.day) for d in days],
    )


def hourly_chart(hours: Sequence[tuple[int, int]]) -> BarChart:
    """Energy per hour of the day (UTC) over the whole period: when the energy was used."""
    return bar_chart(
        "Consumption by hour of the day (UTC), whole period",
        hours,
        [f"{h:02d}" for h in range(len(hours))],
    )


def to_svg(chart: BarChart) -> str:
    """The chart as an inline SVG element; every text escaped."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {chart.width:g} {chart.height:g}" '
        f'role="img" aria-label="{escape(chart.title)}" class="chart" font-family="sans-serif">',
        f"<title>{escape(chart.title)}</title>",
    ]
    right = chart.width - RIGHT
    for y in chart.grid:
        out.append(
            f'<line x1="{LEFT:g}" y1="{y:.2f}" x2="{right:g}" y2="{y:.2f}" stroke="{GRID}"/>'
        )
    for b in chart.boxes:
        out.append(
            f'<rect x="{b.x:.2f}" y="{b.y:.2f}" width="{b.width:.2f}" height="{b.height:.2f}" '
            f'fill="{b.colour}"/>'
        )
    base = chart.height - BOTTOM
    out.append(f'<line x1="{LEFT:g}" y1="{base:g}" x2="{right:g}" y2="{base:g}" stroke="{AXIS}"/>')
    for label in chart.labels:
        out.append(
            f'<text x="{label.x:.2f}" y="{label.y:.2f}" text-anchor="{label.anchor}" '
            f'font-size="10" fill="{AXIS}">{escape(label.text)}</text>'
        )
    x = LEFT
    for colour, meaning in chart.legend:
        out.append(f'<rect x="{x:g}" y="6" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14:g}" y="15" font-size="10">{escape(meaning)}</text>')
        x += 20 + 6 * len(meaning)
    out.append("</svg>")
    return "\n".join(out)
