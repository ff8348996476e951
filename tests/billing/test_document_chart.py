"""The document's figures as printed and drawn: exact kWh, bars in proportion, all in the box."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.document_chart import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, bar_chart
from meterseal.billing.document_view import kwh

WH = st.integers(min_value=0, max_value=10**12)


@given(WH)
def test_kwh_prints_the_signed_wh_exactly(wh: int) -> None:
    printed = kwh(wh)
    assert Decimal(printed.replace(",", "")) * 1000 == wh
    assert printed.count(".") == 1
    assert len(printed.split(".")[1]) == 3


@given(st.lists(st.tuples(WH, WH), min_size=1, max_size=92))
def test_bars_stay_in_the_plot_and_keep_their_proportions(bars: list[tuple[int, int]]) -> None:
    chart = bar_chart("t", bars, [str(i) for i in range(len(bars))])
    base = HEIGHT - BOTTOM
    for box in chart.boxes:
        assert box.x >= LEFT
        assert box.x + box.width <= WIDTH - RIGHT + 1e-6
        assert box.y >= TOP - 1e-6
        assert box.y + box.height <= base + 1e-6
    drawn = sum(1 for m, e in bars for part in (m, e) if part)
    assert len(chart.boxes) == drawn
    heights = sorted((m + e, sum(b.height for b in chart.boxes if abs(b.x - x) < 1e-9))
                     for (m, e), x in zip(bars, _xs(len(bars)), strict=True))  # fmt: skip
    # One scale for every bar: heights grow with the energy, in proportion.
    top_wh, top_height = heights[-1]
    for wh, height in heights:
        expected = height * top_wh if top_wh else 0
        assert abs(wh * top_height - expected) <= 1e-6 * max(1, top_wh * top_height)
    assert len(chart.labels) <= 16 + 1 + len(chart.grid)  # x labels thinned, kWh, y ticks


def _xs(count: int) -> list[float]:
    slot = (WIDTH - LEFT - RIGHT) / count
    return [LEFT + i * slot + slot * 0.1 for i in range(count)]
