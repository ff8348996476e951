"""Tariffs: known answers per kind, DST, tier bounds, digest stability, the book, bad files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.billing.tariff import (
    Block,
    Charges,
    FlatRate,
    Tariff,
    TariffBook,
    TariffError,
    TieredBlocks,
    TimeOfUse,
    TouWindow,
    builtin_tariffs,
    load_tariff,
    loads_tariff,
    price,
    price_slots,
)
from meterseal.billing.tariff_pricing import standing_days

D = Decimal
BERLIN = ZoneInfo("Europe/Berlin")
ALL_DAYS = frozenset(range(7))


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, zone: ZoneInfo = BERLIN
) -> int:
    """Unix seconds of a local wall-clock time."""
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=zone).timestamp())


def tariff(rates: FlatRate | TimeOfUse | TieredBlocks, standing: str = "0", **kw: str) -> Tariff:
    fields = {"currency": "EUR", "timezone": "Europe/Berlin", **kw}
    return Tariff("t", 1, fields["currency"], fields["timezone"], D(standing), rates)


def window(
    name: str, start: str, end: str, price_: str, days: frozenset[int] = ALL_DAYS
) -> TouWindow:
    return TouWindow(name, days, start, end, D(price_))


def amounts(charges: Charges) -> list[tuple[str, int, str, str]]:
    return [(li.label, li.energy_wh, str(li.unit_price), str(li.amount)) for li in charges.lines]


# --- known answers ---------------------------------------------------------------------------

NOV1, DEC1 = local(2026, 11, 1), local(2026, 12, 1)


def test_flat_known_answer() -> None:
    flat = builtin_tariffs().get("example-flat", 1)
    intervals = [(NOV1, 900, 1000), (NOV1 + 900, 900, 2000), (DEC1 - 900, 900, 1500)]
    charges = price(flat, intervals, period_start=NOV1, period_end=DEC1)
    # 4.5 kWh x 0.312 = 1.404 -> 1.40; 30 days x 0.45 = 13.50
    assert amounts(charges) == [
        ("energy", 4500, "0.312", "1.40"),
        ("standing charge (30 days)", 0, "0.45", "13.50"),
    ]
    assert charges.total == D("14.90")
    assert charges.currency == "EUR"


@pytest.mark.parametrize(
    ("currency", "unit", "wh", "amount"),
    [
        ("EUR", "0.1", 1250, "0.12"),  # 0.125: half-even goes down to the even cent
        ("EUR", "0.1", 1350, "0.14"),  # 0.135: and up here
        ("EUR", "0.1", 1251, "0.13"),
        ("JPY", "25", 1500, "38"),  # 37.5, no minor unit
        ("JPY", "25", 2500, "62"),  # 62.5
        ("KWD", "0.0125", 1000, "0.012"),  # three decimals
    ],
)
def test_rounding_half_even_to_minor_unit(currency: str, unit: str, wh: int, amount: str) -> None:
    charges = price(
        tariff(FlatRate(D(unit)), currency=currency), [(NOV1, 900, wh)], period_start=NOV1,
        period_end=DEC1,
    )  # fmt: skip
    assert str(charges.lines[0].amount) == amount
    assert charges.total == D(amount)


def test_total_is_the_sum_of_rounded_lines() -> None:
    tou = tariff(
        TimeOfUse((window("a", "00:00", "12:00", "0.1"),), D("0.1")), standing="0.005"
    )  # each line 0.125 -> 0.12, standing 0.005 -> 0.00 (even), total 0.24 not 0.25
    noon = NOV1 + 12 * 3600
    charges = price(tou, [(NOV1, 900, 1250), (noon, 900, 1250)], period_start=NOV1,
                    period_end=NOV1 + 86_400)  # fmt: skip
    assert [str(li.amount) for li in charges.lines] == ["0.12", "0.12", "0.00"]
    assert charges.total == D("0.24")


def test_time_of_use_known_answer() -> None:
    tou = builtin_tariffs().get("example-tou", 1)
    monday = local(2026, 11, 2)  # Nov 1 2026 is a Sunday
    intervals = [
        (NOV1 + 23 * 3600 + 2700, 900, 100),  # Sun 23:45: weekend
        (monday + 5 * 3600 + 2700, 900, 1000),  # Mon 05:45: night
        (monday + 6 * 3600, 900, 2000),  # Mon 06:00: day
        (monday + 21 * 3600 + 2700, 900, 500),  # Mon 21:45: day
        (monday + 22 * 3600, 900, 700),  # Mon 22:00: night
        (local(2026, 11, 7, 12), 900, 3000),  # Sat 12:00: weekend
    ]
    charges = price(tou, intervals, period_start=NOV1, period_end=local(2026, 11, 8))
    assert amounts(charges) == [
        ("day", 2500, "0.34", "0.85"),
        ("night", 1700, "0.24", "0.41"),  # 0.408
        ("weekend", 3100, "0.27", "0.84"),  # 0.837
        ("standing charge (7 days)", 0, "0.4", "2.80"),
    ]
    assert charges.total == D("4.90")


def test_time_of_use_default_line_and_no_energy() -> None:
    tou = tariff(TimeOfUse((window("peak", "17:00", "20:00", "0.5", frozenset({0})),), D("0.2")))
    charges = price(tou, [(NOV1 + 17 * 3600, 900, 1000)], period_start=NOV1, period_end=DEC1)
    assert amounts(charges) == [("other", 1000, "0.2", "0.20")]  # Sunday: no peak
    empty = price(tou, [], period_start=NOV1, period_end=DEC1)
    assert amounts(empty) == [("peak", 0, "0.5", "0.00")]


@pytest.mark.parametrize(
    ("utc", "label"),
    [
        ((2026, 3, 29, 0, 45), "other"),  # 01:45 CET
        ((2026, 3, 29, 1, 0), "three"),  # 03:00 CEST: 02:00-03:00 never happened
        ((2026, 3, 29, 1, 45), "three"),  # 03:45 CEST
        ((2026, 3, 29, 2, 0), "other"),  # 04:00 CEST
        ((2026, 10, 24, 23, 45), "other"),  # 01:45 CEST
        ((2026, 10, 25, 0, 0), "two"),  # 02:00 CEST, first time
        ((2026, 10, 25, 0, 45), "two"),  # 02:45 CEST
        ((2026, 10, 25, 1, 0), "two"),  # 02:00 CET, second time
        ((2026, 10, 25, 1, 45), "two"),  # 02:45 CET
        ((2026, 10, 25, 2, 0), "three"),  # 03:00 CET
    ],
)
def test_time_of_use_across_dst_in_berlin(utc: tuple[int, int, int, int, int], label: str) -> None:
    windows = (window("two", "02:00", "03:00", "1"), window("three", "03:00", "04:00", "1"))
    tou = tariff(TimeOfUse(windows, D(0)))
    start = int(dt.datetime(*utc, tzinfo=dt.UTC).timestamp())
    charges = price(tou, [(start, 900, 1000)], period_start=start, period_end=start + 900)
    assert charges.lines[0].label == label


def test_dst_autumn_night_has_eight_quarter_hours_in_the_repeated_hour() -> None:
    tou = tariff(TimeOfUse((window("two", "02:00", "03:00", "1"),), D(0)))
    day_start, day_end = local(2026, 10, 25), local(2026, 10, 26)
    intervals = [(t, 900, 1) for t in range(day_start, day_end, 900)]
    charges = price(tou, intervals, period_start=day_start, period_end=day_end)
    assert [(li.label, li.energy_wh) for li in charges.lines] == [("two", 8), ("other", 92)]


@pytest.mark.parametrize(
    ("zone", "year"),
    [("Europe/Berlin", 2026), ("America/New_York", 2026), ("Australia/Lord_Howe", 2026),
     ("America/St_Johns", 2025), ("Asia/Kathmandu", 2026), ("Pacific/Apia", 2011)],
)  # fmt: skip
def test_time_of_use_matches_zoneinfo_for_every_interval(zone: str, year: int) -> None:
    tz = ZoneInfo(zone)
    start, end = local(year, 1, 1, zone=tz), local(year + 1, 1, 1, zone=tz)
    intervals = [(t, 1800, 1) for t in range(start, end, 1800)]
    hourly = tuple(window(f"h{h}", f"{h:02}:00", f"{h + 1:02}:00", "1") for h in range(24))
    daily = tuple(window(f"d{d}", "00:00", "24:00", "1", frozenset({d})) for d in range(7))
    keyed: tuple[tuple[tuple[TouWindow, ...], Callable[[dt.datetime], str]], ...] = (
        (hourly, lambda t: f"h{t.hour}"),
        (daily, lambda t: f"d{t.weekday()}"),
    )
    for windows, key in keyed:
        tou = tariff(TimeOfUse(windows, D(0)), timezone=zone)
        got = {li.label: li.energy_wh for li in price(tou, intervals, period_start=start,
                                                      period_end=end).lines}  # fmt: skip
        expected = Counter(key(dt.datetime.fromtimestamp(t, tz)) for t, _, _ in intervals)
        assert got == dict(expected)
        slots = price_slots(tou, [1] * len(intervals), period_start=start, interval=1800)
        assert {li.label: li.energy_wh for li in slots.lines} == dict(expected)


TIERS = TieredBlocks((Block(D(100), D("0.25")), Block(D(300), D("0.31")), Block(None, D("0.38"))))


@pytest.mark.parametrize(
    ("wh", "lines"),
    [
        (0, [("block 1: up to 100 kWh", 0, "0.00")]),
        (100_000, [("block 1: up to 100 kWh", 100_000, "25.00")]),  # exactly at the bound
        (100_001, [("block 1: up to 100 kWh", 100_000, "25.00"),
                   ("block 2: 100 to 300 kWh", 1, "0.00")]),
        (450_000, [("block 1: up to 100 kWh", 100_000, "25.00"),
                   ("block 2: 100 to 300 kWh", 200_000, "62.00"),
                   ("block 3: above 300 kWh", 150_000, "57.00")]),
    ],
)  # fmt: skip
def test_tiered_known_answers(wh: int, lines: list[tuple[str, int, str]]) -> None:
    # Split over many intervals: tiers apply to the period's cumulative energy.
    intervals = [(NOV1 + i * 900, 900, wh // 4 + (wh % 4 if i == 0 else 0)) for i in range(4)]
    charges = price(tariff(TIERS), intervals, period_start=NOV1, period_end=DEC1)
    assert [(li.label, li.energy_wh, str(li.amount)) for li in charges.lines] == lines


def test_builtin_tiered_with_standing_charge() -> None:
    tiered = builtin_tariffs().get("example-tiered", 1)
    charges = price(tiered, [(NOV1, 900, 450_000)], period_start=NOV1, period_end=DEC1)
    assert charges.lines[-1].amount == D("9.00")  # 30 x 0.30
    assert charges.total == D("153.00")


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (local(2026, 10, 1), local(2026, 11, 1), 31),  # 31 days and 1 hour of UTC time
        (local(2026, 3, 1), local(2026, 4, 1), 31),  # 31 days less 1 hour
        (local(2026, 10, 25), local(2026, 10, 26), 1),  # the 25-hour day
        (local(2026, 11, 1), local(2026, 11, 1, 6), 1),  # a part day counts whole
        (local(2026, 11, 1), local(2026, 11, 2) + 1, 2),
        (local(2026, 1, 1, 12), local(2026, 2, 1, 12), 31),  # not aligned to midnight
    ],
)
def test_standing_charge_days(start: int, end: int, days: int) -> None:
    assert standing_days(BERLIN, start, end) == days
    charges = price(tariff(FlatRate(D(0)), standing="1"), [], period_start=start, period_end=end)
    assert charges.lines[-1].amount == D(days)


def test_zero_standing_charge_has_no_line() -> None:
    charges = price(tariff(FlatRate(D(1))), [], period_start=NOV1, period_end=DEC1)
    assert [li.label for li in charges.lines] == ["energy"]


@pytest.mark.parametrize(
    "interval",
    [(NOV1 - 900, 900, 1), (DEC1 - 900, 901, 1), (NOV1, 0, 1), (NOV1, 900, -1)],
)
def test_intervals_must_lie_in_the_period(interval: tuple[int, int, int]) -> None:
    for rates in (FlatRate(D(1)), TIERS, TimeOfUse((window("a", "00:00", "01:00", "1"),), D(1))):
        with pytest.raises(TariffError) as info:
            price(tariff(rates), [interval], period_start=NOV1, period_end=DEC1)
        assert info.value.field == "intervals"


def test_empty_period_is_refused() -> None:
    with pytest.raises(TariffError, match="period_end"):
        price(tariff(FlatRate(D(1))), [], period_start=NOV1, period_end=NOV1)


# --- digest, CBOR and TOML round trips (Hypothesis) ----------------------------------------

prices = st.decimals(min_value=0, max_value=1000, places=4)
names = st.text(
    st.characters(categories=("L", "N", "P", "S"), include_characters=' "\\'), min_size=1,
    max_size=12,
).filter(lambda s: s == s.strip() and s.isprintable() and s != "other")  # fmt: skip


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02}:{minute % 60:02}"


@st.composite
def time_of_use(draw: st.DrawFn) -> TimeOfUse:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    cuts = sorted(draw(st.lists(st.integers(0, 1440), min_size=2, max_size=6, unique=True)))
    labels = draw(st.lists(names, min_size=len(cuts) - 1, max_size=len(cuts) - 1, unique=True))
    windows = tuple(
        TouWindow(label, days, _hhmm(a), _hhmm(b), draw(prices))
        for label, (a, b) in zip(labels, itertools.pairwise(cuts), strict=True)
    )
    return TimeOfUse(windows, draw(prices))


@st.composite
def tiered(draw: st.DrawFn) -> TieredBlocks:
    kwh = st.decimals(min_value=D("0.001"), max_value=10**6, places=3)
    bounds = sorted(draw(st.lists(kwh, max_size=4, unique=True)))
    return TieredBlocks(tuple(Block(b, draw(prices)) for b in [*bounds, None]))


tariffs = st.builds(
    Tariff,
    tariff_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    version=st.integers(1, 2**63 - 1),
    currency=st.sampled_from(["EUR", "USD", "JPY", "CHF"]),
    timezone=st.sampled_from(["Europe/Berlin", "UTC", "America/New_York"]),
    standing_charge_per_day=prices,
    rates=st.builds(FlatRate, prices) | time_of_use() | tiered(),
)


@given(tariffs)
@settings(max_examples=150, deadline=None)
def test_digest_stable_across_cbor_toml_and_json(t: Tariff) -> None:
    assert len(t.digest()) == 32
    again = Tariff.from_cbor(t.to_cbor())
    assert again == t
    assert again.digest() == t.digest()
    from_toml = loads_tariff(t.to_toml())
    assert from_toml == t
    assert from_toml.digest() == t.digest()
    assert Tariff.from_dict(json.loads(json.dumps(t.to_dict()))).digest() == t.digest()


def _bump(value: Decimal) -> Decimal:
    return value + D("0.001")


def _rates_price(t: Tariff) -> Tariff:
    r = t.rates
    if isinstance(r, FlatRate):
        rates: FlatRate | TimeOfUse | TieredBlocks = FlatRate(_bump(r.price_per_kwh))
    elif isinstance(r, TimeOfUse):
        rates = dataclasses.replace(r, default_price_per_kwh=_bump(r.default_price_per_kwh))
    else:
        last = dataclasses.replace(r.blocks[-1], price_per_kwh=_bump(r.blocks[-1].price_per_kwh))
        rates = TieredBlocks((*r.blocks[:-1], last))
    return dataclasses.replace(t, rates=rates)


def _first_window(t: Tariff, change: Callable[[TouWindow], TouWindow]) -> Tariff:
    if not isinstance(t.rates, TimeOfUse):
        return _rates_price(t)
    windows = (change(t.rates.windows[0]), *t.rates.windows[1:])
    return dataclasses.replace(t, rates=dataclasses.replace(t.rates, windows=windows))


def _other_days(w: TouWindow) -> TouWindow:
    return dataclasses.replace(w, days=(w.days ^ {0}) or frozenset({1}))


MUTATIONS: dict[str, Callable[[Tariff], Tariff]] = {
    "tariff_id": lambda t: dataclasses.replace(t, tariff_id=t.tariff_id + "x"),
    "version": lambda t: dataclasses.replace(t, version=t.version % (2**63 - 1) + 1),
    "currency": lambda t: dataclasses.replace(t, currency="GBP"),
    "timezone": lambda t: dataclasses.replace(t, timezone="Asia/Tokyo"),
    "standing": lambda t: dataclasses.replace(
        t, standing_charge_per_day=_bump(t.standing_charge_per_day)
    ),
    "rates_price": _rates_price,
    "window_name": lambda t: _first_window(t, lambda w: dataclasses.replace(w, name="renamed")),
    "window_days": lambda t: _first_window(t, _other_days),
    "kind": lambda t: dataclasses.replace(
        t, rates=TieredBlocks((Block(None, D(1)),)) if t.kind == "flat" else FlatRate(D(1))
    ),
}  # fmt: skip


@given(tariffs, st.sampled_from(sorted(MUTATIONS)))
@settings(max_examples=200, deadline=None)
def test_digest_changes_when_any_field_changes(t: Tariff, mutation: str) -> None:
    changed = MUTATIONS[mutation](t)
    assert changed != t
    assert changed.digest() != t.digest()


def test_digest_ignores_how_a_decimal_is_written() -> None:
    a = tariff(FlatRate(D("0.30")), standing="1.50")
    b = tariff(FlatRate(D("0.3")), standing="1.5")
    assert a.digest() == b.digest()
    assert a.to_dict()["rates"]["price_per_kwh"] == "0.3"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: cbor2.dumps(d),  # not canonical: keys in insertion order
        lambda d: cbor2.dumps({**d, "colour": "red"}, canonical=True),  # unknown key
        lambda d: cbor2.dumps({**d, "version": 1.0}, canonical=True),  # float
        lambda d: cbor2.dumps({**d, "standing_charge_per_day": 0}, canonical=True),  # not text
        lambda d: cbor2.dumps(d, canonical=True) + b"\x00",  # trailing byte
        lambda d: b"\xff",
    ],
)
def test_from_cbor_accepts_only_the_canonical_encoding(
    mangle: Callable[[dict[str, object]], bytes],
) -> None:
    t = builtin_tariffs().get("example-tou", 1)
    assert Tariff.from_cbor(cbor2.dumps(t.to_dict(), canonical=True)) == t
    with pytest.raises(TariffError):
        Tariff.from_cbor(mangle(t.to_dict()))


# --- the book and the shipped tariffs ------------------------------------------------------


def test_book_refuses_a_changed_tariff_under_the_same_version() -> None:
    book = TariffBook(builtin_tariffs())
    flat = book.get("example-flat", 1)
    book.add(flat)  # the same content again is fine
    book.add(dataclasses.replace(flat, standing_charge_per_day=D("0.450")))  # so is 0.450
    changed = dataclasses.replace(flat, rates=FlatRate(D("0.313")))
    with pytest.raises(TariffError) as info:
        book.add(changed)
    assert info.value.field == "version"
    assert book.get("example-flat", 1) == flat
    book.add(dataclasses.replace(changed, version=2))
    assert book.latest("example-flat").version == 2
    assert book.get("example-flat", 1) == flat
    with pytest.raises(TariffError):
        book.get("example-flat", 3)
    with pytest.raises(TariffError):
        book.latest("nope")


def test_builtin_tariffs_are_the_three_kinds() -> None:
    book = builtin_tariffs()
    assert len(book) == 3
    assert sorted(t.kind for t in book) == ["flat", "tiered", "time_of_use"]
    for t in book:
        assert loads_tariff(t.to_toml()) == t


# --- bad files --------------------------------------------------------------------------------

GOOD = """\
tariff_id = "t"
version = 1
currency = "EUR"
timezone = "Europe/Berlin"
standing_charge_per_day = "0.4"

[rates]
kind = "time_of_use"
default_price_per_kwh = "0.3"

[[rates.windows]]
name = "day"
days = ["mon", "tue"]
start = "06:00"
end = "22:00"
price_per_kwh = "0.34"

[[rates.windows]]
name = "night"
days = ["mon"]
start = "22:00"
end = "24:00"
price_per_kwh = "0.24"
"""
TIERED = """\
tariff_id = "t"
version = 1
currency = "EUR"
timezone = "UTC"
standing_charge_per_day = 0

[rates]
kind = "tiered"
[[rates.blocks]]
up_to_kwh = 100
price_per_kwh = 0.25
[[rates.blocks]]
up_to_kwh = 300
price_per_kwh = 0.31
[[rates.blocks]]
price_per_kwh = 0.38
"""

BAD = [
    (GOOD.replace("version = 1\n", ""), "version"),
    (GOOD.replace("version = 1", "version = 0"), "version"),
    (GOOD.replace("version = 1", 'version = "1"'), "version"),
    (GOOD.replace('"EUR"', '"eur"'), "currency"),
    (GOOD.replace("Europe/Berlin", "Mars/Olympus"), "timezone"),
    (GOOD.replace("Europe/Berlin", "localtime"), "timezone"),
    (GOOD.replace('"0.4"', '"-0.4"'), "standing_charge_per_day"),
    (GOOD.replace('"0.4"', "-0.4"), "standing_charge_per_day"),
    (GOOD.replace('"0.4"', '"4e-1"'), "standing_charge_per_day"),
    (GOOD.replace('"0.4"', "nan"), "standing_charge_per_day"),
    (GOOD.replace('tariff_id = "t"', 'tariff_id = "-t"'), "tariff_id"),
    (GOOD + 'colour = "red"\n', "rates.windows[1].colour"),
    ('colour = "red"\n' + GOOD, "colour"),
    (GOOD.split("[rates]")[0], "rates"),
    (GOOD.replace('"time_of_use"', '"spot"'), "rates.kind"),
    (GOOD.replace('kind = "time_of_use"\n', ""), "rates.kind"),
    (GOOD.replace('"time_of_use"', '"flat"'), "rates.default_price_per_kwh"),
    (GOOD.replace('"06:00"', '"6:00"'), "rates.windows[0].start"),
    (GOOD.replace('"22:00"\nprice', '"24:30"\nprice'), "rates.windows[0].end"),
    (GOOD.replace('"06:00"', '"23:00"'), "rates.windows[0].end"),
    (GOOD.replace('"06:00"', '"06:00"\nstart_again = "x"'), "rates.windows[0].start_again"),
    (GOOD.replace('start = "22:00"', 'start = "21:59"'), "rates.windows[1]"),
    (GOOD.replace('"tue"]', '"tuesday"]'), "rates.windows[0].days"),
    (GOOD.replace('["mon"]', '["mon", "mon"]'), "rates.windows[1].days"),
    (GOOD.replace('["mon"]', "[]"), "rates.windows[1].days"),
    (GOOD.replace('"night"', '"day"'), "rates.windows[1].price_per_kwh"),
    (GOOD.replace('"night"', '"other"'), "rates.windows[1].name"),
    (GOOD.replace('"night"', '""'), "rates.windows[1].name"),
    (GOOD.replace('"0.24"', '"0.1234567890123"'), "rates.windows[1].price_per_kwh"),
    (GOOD.replace('"0.24"', '"2000000"'), "rates.windows[1].price_per_kwh"),
    (TIERED.replace("up_to_kwh = 300", "up_to_kwh = 100"), "rates.blocks[1].up_to_kwh"),
    (TIERED.replace("up_to_kwh = 300", "up_to_kwh = 50"), "rates.blocks[1].up_to_kwh"),
    (TIERED.replace("up_to_kwh = 100", "up_to_kwh = 0"), "rates.blocks[0].up_to_kwh"),
    (TIERED.replace("up_to_kwh = 100", "up_to_kwh = 0.0001"), "rates.blocks[0].up_to_kwh"),
    (TIERED.replace("up_to_kwh = 100\n", ""), "rates.blocks[0].up_to_kwh"),
    (TIERED + "up_to_kwh = 500\n", "rates.blocks[2].up_to_kwh"),
    (TIERED.replace("price_per_kwh = 0.31", "price = 0.31"), "rates.blocks[1].price"),
    (TIERED.replace("[[rates.blocks]]\nprice_per_kwh = 0.38\n", ""), "rates.blocks[1].up_to_kwh"),
    ("[rates\n", None),  # not TOML at all
]


@pytest.mark.parametrize(("text", "field"), BAD)
def test_bad_files_name_the_field(tmp_path: Path, text: str, field: str | None) -> None:
    assert load_tariff(_write(tmp_path, GOOD)).kind == "time_of_use"
    assert load_tariff(_write(tmp_path, TIERED)).kind == "tiered"
    path = _write(tmp_path, text)
    with pytest.raises(TariffError) as info:
        load_tariff(path)
    assert info.value.field == field
    assert str(path) in info.value.diagnostics()
    assert (field or "not valid TOML") in info.value.diagnostics()


def _write(folder: Path, text: str) -> Path:
    path = folder / "tariff.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_json_floats_and_python_floats_are_refused() -> None:
    data = builtin_tariffs().get("example-flat", 1).to_dict()
    data["rates"]["price_per_kwh"] = 0.312
    with pytest.raises(TariffError) as info:
        Tariff.from_dict(data)
    assert info.value.field == "rates.price_per_kwh"
    with pytest.raises(TariffError, match="price_per_kwh"):
        FlatRate(0.312)  # type: ignore[arg-type]
    with pytest.raises(TariffError, match="version"):
        Tariff("t", True, "EUR", "UTC", D(0), FlatRate(D(1)))
    with pytest.raises(TariffError, match="days"):
        TouWindow("a", {1}, "00:00", "01:00", D(1))  # type: ignore[arg-type]


def test_missing_file_is_a_tariff_error(tmp_path: Path) -> None:
    with pytest.raises(TariffError, match="cannot read"):
        load_tariff(tmp_path / "missing.toml")


def test_the_examples_in_the_docs_are_the_shipped_tariffs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "tariffs.md").read_text(encoding="utf-8")
    blocks = [b.split("```")[0] for b in text.split("```toml\n")[1:]]
    book = builtin_tariffs()
    assert sorted(loads_tariff(b).tariff_id for b in blocks) == sorted(t.tariff_id for t in book)
    for block in blocks:
        documented = loads_tariff(block)
        assert documented.digest() == book.get(documented.tariff_id, 1).digest()


# --- a grid of slots priced at once -----------------------------------------------------------

GRID_STARTS = [
    NOV1,
    local(2026, 3, 28, 22),  # the spring-forward night in Berlin
    local(2026, 10, 24, 23, 30),  # the repeated hour in Berlin
    local(2026, 3, 8, 0, zone=ZoneInfo("America/New_York")),
    NOV1 + 7 * 60 + 13,  # not on a quarter hour
]


@given(
    tariffs,
    st.sampled_from(GRID_STARTS),
    st.sampled_from([60, 900, 3600, 5400]),
    st.lists(st.integers(0, 10**7), min_size=1, max_size=120),
)
def test_pricing_a_grid_of_slots_is_pricing_its_intervals(
    t: Tariff, start: int, interval: int, energy: list[int]
) -> None:
    intervals = [(start + i * interval, interval, wh) for i, wh in enumerate(energy)]
    end = start + len(energy) * interval
    expected = price(t, intervals, period_start=start, period_end=end)
    assert price_slots(t, energy, period_start=start, interval=interval) == expected


@pytest.mark.parametrize("tariff_id", ["example-flat", "example-tiered", "example-tou"])
def test_a_month_of_quarter_hours_across_dst_priced_as_a_grid(tariff_id: str) -> None:
    t = builtin_tariffs().get(tariff_id, 1)
    start = local(2026, 10, 1)
    energy = [(i * 7919) % 400 for i in range(2880)]
    intervals = [(start + i * 900, 900, wh) for i, wh in enumerate(energy)]
    expected = price(t, intervals, period_start=start, period_end=start + 2880 * 900)
    assert price_slots(t, energy, period_start=start, interval=900) == expected


@pytest.mark.parametrize(
    ("energy", "interval", "match"),
    [([5, -1, 3], 900, "slot 1 has -1 Wh"), ([], 900, "at least one slot"), ([1], 0, "positive")],
)
def test_a_grid_with_negative_energy_or_no_slots_is_refused(
    energy: list[int], interval: int, match: str
) -> None:
    with pytest.raises(TariffError, match=match):
        price_slots(tariff(FlatRate(D(1))), energy, period_start=NOV1, interval=interval)


def test_a_float_in_a_grid_is_refused() -> None:
    tou = tariff(TimeOfUse((window("day", "08:00", "20:00", "1"),), D(0)))
    with pytest.raises(TariffError, match="integer Wh"):
        price_slots(tou, [1, 2.5, 3], period_start=NOV1, interval=900)  # type: ignore[list-item]


@pytest.mark.parametrize(("start", "interval"), [(float(NOV1), 900), (NOV1, 900.0), (NOV1, True)])
def test_a_grid_of_other_than_integer_seconds_is_refused(start: object, interval: object) -> None:
    with pytest.raises(TariffError, match="integer seconds"):
        price_slots(tariff(FlatRate(D(1))), [1, 2], period_start=start, interval=interval)  # type: ignore[arg-type]
