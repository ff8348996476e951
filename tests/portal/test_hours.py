"""Consumption by hour: the profile of a chosen day and of the period, on the bill page."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.compute import BillPacket
from meterseal.portal.hours import HOURS, hour_view, hourly_wh
from meterseal.portal.views import day_of
from tests.portal.conftest import Portal
from tests.portal.test_pages import signed_in

_DAY0 = 1_790_000_000 - 1_790_000_000 % 86_400  # a UTC midnight
_packets = st.lists(
    st.builds(
        BillPacket,
        st.just("m1"),
        st.integers(0, 10**6),
        st.integers(_DAY0, _DAY0 + 5 * 86_400 - 1),
        st.integers(0, 5_000),
        st.just(b""),
    ),
    max_size=60,
)


@given(_packets)
def test_the_hours_of_every_day_add_up_to_the_period(packets: list[BillPacket]) -> None:
    period = hourly_wh(packets)
    days = {day_of(p.timestamp) for p in packets}
    per_day = [hourly_wh(packets, d) for d in days]
    assert len(period) == HOURS
    assert (
        [sum(col) for col in zip(*per_day, strict=True)] == period if per_day else not any(period)
    )
    assert sum(period) == sum(p.energy_wh for p in packets)


def test_an_hour_lands_in_its_own_bar() -> None:
    at = _DAY0 + 13 * 3600 + 59 * 60  # 13:59 UTC
    packets = [BillPacket("m", 1, at, 700, b""), BillPacket("m", 2, at + 60, 300, b"")]
    view = hour_view(packets, day_of(at))
    assert view.day_wh[13] == 700
    assert view.day_wh[14] == 300
    assert sum(view.day_wh) == 1000
    assert view.peak_hour == 13
    assert str(view.day_svg).startswith("<svg")
    assert "<script" not in view.day_svg
    other = hour_view(packets, day_of(at) + dt.timedelta(days=1))
    assert other.peak_hour is None
    assert not any(other.day_wh)


_ROW = re.compile(
    r"<tr><td>(\d\d):00</td><td class=\"num\">([\d.]+)</td><td class=\"num\">([\d.]+)</td>"
)


_READING = re.compile(
    r'<tr><td>(\d\d):\d\d</td><td>[^<]+</td><td class="num">\d+</td><td class="num">(\d+)</td>'
)


def _hours(html: str) -> tuple[list[int], list[int]]:
    """(the day's Wh per hour, the period's) from the page's figures table."""
    rows = _ROW.findall(html)
    assert [int(h) for h, _, _ in rows] == list(range(HOURS))
    return [round(float(d) * 1000) for _, d, _ in rows], [
        round(float(p) * 1000) for _, _, p in rows
    ]


def test_the_bill_page_shows_the_hours_of_the_chosen_day(portal: Portal) -> None:
    _, account, bill_id = portal.customer(0)
    client = signed_in(portal, account)
    url = f"/portal/bills/{quote(bill_id, safe='')}"
    days = []
    for query in ("", "?day=2026-10-30"):
        page = client.get(url + query)
        assert page.status_code == 200
        assert 'data-chart="day"' in page.text
        assert 'data-chart="period"' in page.text
        assert "style=" not in page.text  # the CSP allows no inline style
        day_wh, period_wh = _hours(page.text)
        # The day's bars are the day's readings (the page's own table of them), hour by hour.
        by_hour = [0] * HOURS
        for hour, wh in _READING.findall(page.text):
            by_hour[int(hour)] += int(wh)
        assert day_wh == by_hour
        assert sum(day_wh) > 0
        assert all(p >= d for p, d in zip(period_wh, day_wh, strict=True))
        days.append((re.findall(r"<h3>On (\d{4}-\d\d-\d\d)", page.text), day_wh, period_wh))
    assert days[0] == days[1]
    assert days[0][0] == ["2026-10-30"]  # the fixture's one billed day
