"""The aggregator: MODERATE per customer, LOW per region above k, frames, lateness, DP budget."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from meterseal.acquisition.records import AcceptedReading
from meterseal.dissemination.aggregator import (
    Aggregation,
    AggregationPolicy,
    Aggregator,
    CustomerLoad,
    RegionalLoad,
)
from meterseal.dissemination.feed import publish_accepted
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import Publisher
from meterseal.dissemination.privacy import DifferentialPrivacy, PrivacyBudget
from meterseal.dissemination.timeframe import Frame
from tests.dissemination.conftest import AT, NOW, World, reading, seeded

HOUR = 3600
C = [bytes([i]) * 16 for i in range(1, 7)]


def _feed(agg: Aggregation, hours: int = 1, meters: int = 6, region: str = "R01") -> None:
    for h in range(hours):
        for q in range(4):
            for m in range(meters):
                agg.add(region, C[m], h * HOUR + q * 900, 10 * (m + 1))


def test_hourly_customer_and_regional_sums_with_k() -> None:
    agg = Aggregation(AggregationPolicy(k=6))
    _feed(agg, meters=6)
    for q in range(4):
        agg.add("R02", b"\x09" * 16, q * 900, 5)  # one meter: below k
    assert agg.due() == []  # the hour is still open (and within lateness)
    released = agg.flush()
    customers = [r for r in released if isinstance(r, CustomerLoad)]
    regions = [r for r in released if isinstance(r, RegionalLoad)]
    assert [(c.customer, c.wh, c.readings) for c in customers if c.region == "R01"] == [
        (C[m], 4 * 10 * (m + 1), 4) for m in range(6)
    ]
    assert regions == [RegionalLoad("R01", 0, HOUR, 4 * 10 * 21, 6, None)]
    assert agg.counters["withheld_k"] == 1


def test_frames_close_on_data_time_and_late_readings_are_dropped() -> None:
    agg = Aggregation(AggregationPolicy(k=1, lateness=900))
    agg.add("R01", C[0], 0, 1)
    agg.add("R01", C[0], HOUR + 800, 1)
    assert agg.due() == []  # HOUR + 800 - 900 < HOUR
    agg.add("R01", C[0], HOUR + 900, 1)
    first = agg.due()
    assert {(type(r).__name__, r.start) for r in first} == {
        ("CustomerLoad", 0),
        ("RegionalLoad", 0),
    }
    agg.add("R01", C[1], 100, 1)  # for the released hour
    assert agg.counters["late"] == 1
    assert all(r.start == HOUR for r in agg.flush())


@pytest.mark.parametrize(
    ("text", "timestamp", "start", "end"),
    [
        ("15m", 1000, 900, 1800),
        ("1h", 7300, 7200, 10800),
        ("1d", 90_000, 86_400, 172_800),
        ("1mo", int(dt.datetime(2026, 2, 10, tzinfo=dt.UTC).timestamp()),
         int(dt.datetime(2026, 2, 1, tzinfo=dt.UTC).timestamp()),
         int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())),
        ("3mo", int(dt.datetime(2026, 12, 31, tzinfo=dt.UTC).timestamp()),
         int(dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp()),
         int(dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp())),
    ],
)  # fmt: skip
def test_time_frames_from_minutes_to_months(
    text: str, timestamp: int, start: int, end: int
) -> None:
    frame = Frame.parse(text)
    assert (frame.start(timestamp), frame.end(frame.start(timestamp))) == (start, end)
    assert Frame.parse(frame.text()) == frame


@pytest.mark.parametrize("text", ["", "0h", "1w", "h", "-1d", "1.5h"])
def test_bad_time_frames_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="time frame"):
        Frame.parse(text)


def test_daily_low_with_hourly_moderate() -> None:
    agg = Aggregation(AggregationPolicy(low=Frame.parse("1d"), k=2))
    _feed(agg, hours=24, meters=2)
    released = agg.flush()
    assert sum(isinstance(r, CustomerLoad) for r in released) == 48
    assert [r.wh for r in released if isinstance(r, RegionalLoad)] == [24 * 4 * 30]


def test_differential_privacy_noises_clamps_and_stops_when_the_budget_is_spent() -> None:
    privacy = DifferentialPrivacy(lambda v: v + 7, 0.5, 25, PrivacyBudget(1.0))
    agg = Aggregation(AggregationPolicy(k=2, privacy=privacy))
    _feed(agg, hours=3, meters=3)  # per meter and hour: 40, 80, 120 Wh, clamped to 25
    for region in ("R02",):
        for m in range(3):
            agg.add(region, C[m], 0, 1)
    low = [r for r in agg.flush() if isinstance(r, RegionalLoad)]
    assert [(r.region, r.start, r.wh, r.meters, r.epsilon) for r in low] == [
        ("R01", 0, 3 * 25 + 7, None, 0.5),
        ("R02", 0, 3 + 7, None, 0.5),  # same frame: parallel composition, no extra charge
        ("R01", HOUR, 3 * 25 + 7, None, 0.5),
    ]
    assert agg.counters["withheld_budget"] == 1  # the third hour found the budget spent
    assert privacy.budget.remaining == 0


def test_the_aggregator_end_to_end_through_the_router(world: World) -> None:
    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    utility = world.join("utility1", Role.UTILITY, (PrivacyLevel.MODERATE, ""))
    public = world.join("public", Role.PUBLIC_APP, (PrivacyLevel.LOW, ""))
    aggregator = Aggregator(
        member, Publisher("agg", member.keys, rng=seeded(5)), AggregationPolicy(k=3)
    )
    world.network.handlers["agg"] = aggregator.consume
    items = [reading(headend, C[m], q * 900, 100 + m) for q in range(4) for m in range(3)]
    world.network.publish("headend", items)
    world.network.publish("headend", [["garbage", b"x"]])
    world.network.publish("agg", aggregator.releases(at=AT, final=True))
    moderate = [utility.open(i) for i in world.network.take("utility1")]
    assert sorted((d.header.customer, d.values["wh"]) for d in moderate) == [
        (C[m], 4 * (100 + m)) for m in range(3)
    ]
    assert all(d.header.level is PrivacyLevel.MODERATE for d in moderate)
    (low,) = [public.open(i) for i in world.network.take("public")]
    assert low.values == {"wh": 4 * 303, "meters": 3, "epsilon": None}
    assert low.header.customer == b""
    assert low.header.interval == HOUR


def test_accepted_readings_feed_the_high_stream(world: World) -> None:
    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    accepted = [
        AcceptedReading(
            meter_id="MTR-1",
            counter=n,
            timestamp=n * 900,
            interval=900,
            energy_wh=50,
            suite="p256",
            signed_original=b"sig",
            sent_at=0,
            received_at=NOW,
            region_id="R07",
            pseudonym=C[0],
        )
        for n in range(1, 3)
    ]
    items = publish_accepted(headend, accepted, at=AT)
    world.network.publish("headend", items)
    opened = [member.open(i) for i in world.network.take("agg")]
    assert [(d.header.region, d.header.customer, d.header.start, d.values) for d in opened] == [
        ("R07", C[0], 900, {"wh": 50}), ("R07", C[0], 1800, {"wh": 50})
    ]  # fmt: skip
    assert all(b"MTR-1" not in b"".join(i) for i in items)  # never the meter id


def test_stored_readings_come_back_in_pages_within_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterseal.dissemination import feed
    from meterseal.storage import Store
    from meterseal.storage.schema import measurements

    monkeypatch.setattr(feed, "PAGE", 2)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    rows = [
        {"region_id": "R01", "pseudonym": C[n % 2], "timestamp": n * 900, "interval": 900,
         "energy_wh": n, "phasor": None}
        for n in range(7)
    ]  # fmt: skip
    with Store.open(url) as db:
        with db.transaction() as connection:
            connection.execute(measurements.insert(), rows)
        pages = list(feed.stored_readings(db, 900, 6 * 900))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r.energy_wh for p in pages for r in p] == [1, 2, 3, 4, 5]
    assert pages[0][0] == feed.StoredReading("R01", C[1], 900, 900, 1)


def test_a_day_stored_meter_by_meter_is_published_in_data_time_and_none_is_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `simulate` fills the store: each meter's day in a row. The aggregator closes hours
    # on data time, so in ingest order it would drop most of the fleet's readings as late.
    from meterseal.dissemination import feed
    from meterseal.storage import Store
    from meterseal.storage.schema import measurements

    monkeypatch.setattr(feed, "PAGE", 7)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    day = 1_796_515_200
    rows = [
        {"region_id": "R01", "pseudonym": customer, "timestamp": day + q * 900, "interval": 900,
         "energy_wh": 10, "phasor": None}
        for customer in C for q in range(96)
    ]  # fmt: skip
    agg, releases = Aggregation(AggregationPolicy(k=2)), []
    with Store.open(url) as db:
        with db.transaction() as connection:
            connection.execute(measurements.insert(), rows)
        stamps = []
        for page in feed.stored_readings(db, day, day + 86_400):
            for r in page:
                stamps.append(r.timestamp)
                agg.add(r.region_id, r.pseudonym, r.timestamp, r.energy_wh)
                releases += agg.due()
    assert stamps == sorted(stamps)
    assert len(stamps) == len(C) * 96
    assert agg.counters["late"] == 0
    releases += agg.flush()
    assert sum(r.readings for r in releases if isinstance(r, CustomerLoad)) == len(C) * 96


def test_a_reading_published_twice_counts_once() -> None:
    agg = Aggregation(AggregationPolicy(k=1))
    for _ in range(2):  # the same hour twice, e.g. two publish runs that overlap
        for q in range(4):
            agg.add("R01", C[0], q * 900, 10)
    agg.add("R01", C[0], 900, 99)  # another value for a start already counted: still once
    (moderate,) = [r for r in agg.flush() if isinstance(r, CustomerLoad)]
    assert (moderate.wh, moderate.readings) == (40, 4)
    assert agg.counters["duplicate"] == 5
