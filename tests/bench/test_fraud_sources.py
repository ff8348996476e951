"""The real-data sources of `bench fraud`: thieves injected apart from the detectors,
households on calendars of their own, read back the user's way."""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.bench import fraud_inject
from meterseal.bench.fraud_inject import PATTERNS, inject
from meterseal.bench.fraud_sources import (
    MINUTES,
    SOURCES,
    Trace,
    build,
    default_citylearn,
    default_simbench,
    load_citylearn,
    load_simbench,
)
from meterseal.fraud.level_shift import align, histograms


def test_the_injector_shares_no_code_with_the_detectors() -> None:
    tree = ast.parse(Path(fraud_inject.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m and m.startswith("meterseal")}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(PATTERNS)), st.integers(0, 10_000), st.integers(0, 20))
def test_a_theft_starts_at_its_onset_and_keeps_missing_days(
    pattern: str, seed: int, lead: int
) -> None:
    rng = np.random.default_rng(seed)
    days = np.full((lead + 40, 96), np.nan)
    days[lead:] = rng.gamma(2.0, 0.1, (40, 96))
    days[lead + 30] = np.nan  # a missing day stays missing
    altered = inject(days, pattern, np.random.default_rng(seed))
    changed = np.flatnonzero(np.nansum(np.abs(altered - days), axis=1) > 1e-9)
    assert len(changed)
    onset = changed[0]
    assert lead + 0.3 * 40 - 1 <= onset <= lead + 0.7 * 40
    np.testing.assert_array_equal(altered[:onset], days[:onset])
    assert np.isnan(altered[lead + 30]).all()
    assert np.isnan(altered[:lead]).all()
    assert (np.nan_to_num(altered) >= 0).all()


def _trace(days: int = 400) -> Trace:
    """A small stand-in for the house: a daily rhythm with noise, four channels."""
    rng = np.random.default_rng(3)
    minute = np.arange(MINUTES)
    rhythm = 5 + 4 * np.sin((minute / MINUTES - 0.3) * 2 * np.pi).clip(0)
    channels = np.stack([rng.gamma(1.0, 1.0, (days, MINUTES)) * rhythm / 4 for _ in range(4)])
    return Trace(dt.date(2007, 1, 1), channels.sum(0)[None], channels)


def _houses(days: int = 400) -> Trace:
    """A stand-in for several households: the same rhythm at different levels."""
    one = _trace(days).houses[0]
    return Trace(dt.date(2007, 1, 1), np.stack([one, 2 * one, 0.5 * one]))


@pytest.mark.parametrize("spec", SOURCES, ids=[s.name for s in SOURCES])
def test_a_source_has_households_on_calendars_of_their_own(spec: object) -> None:
    from meterseal.bench.fraud_sources import SourceSpec

    assert isinstance(spec, SourceSpec)
    small = replace(
        spec,
        customers=60,
        span_days=50,
        window=(20, 40),
        trace_days=(dt.date(2007, 1, 1), dt.date(2008, 1, 20)),
    )
    source = build(small, _houses() if spec.trace == "simbench" else _trace())
    data = source.data
    assert len(data.customers) == 60
    assert source.thief.sum() == round(small.share * 60)
    assert set(p for p, t in zip(source.patterns, source.thief, strict=True) if t) <= set(PATTERNS)
    present = ~np.isnan(data.energy).all(axis=2)
    assert isinstance(present, np.ndarray)  # (customers, periods), not one bool
    first = present.argmax(axis=1)
    last = data.periods - present[:, ::-1].argmax(axis=1)
    assert len(set(first.tolist())) > 5  # different start dates
    assert len(set(last.tolist())) > 5  # and end dates
    assert data.slots == MINUTES // small.slot_minutes
    assert data.tz == small.tz


def test_simbench_households_are_five_real_years_of_their_own() -> None:
    path = default_simbench()
    assert path is not None, "tests/vectors/simbench-households is part of the checkout"
    trace = load_simbench(path)
    assert trace.first_day == dt.date(2016, 1, 1)
    assert trace.houses.shape == (5, 366, MINUTES)
    daily = trace.houses.sum(axis=2)  # Wh a day
    assert not np.isnan(daily).any()
    # every household at the same mean draw, each with a year of its own
    np.testing.assert_allclose(daily.mean(axis=1) / 1000 / 24, 0.45, rtol=1e-9)
    assert np.corrcoef(daily).max(initial=0, where=~np.eye(5, dtype=bool)) < 0.9
    # a window of the SimBench source comes from one of them, on its own calendar
    spec = next(s for s in SOURCES if s.trace == "simbench")
    source = build(replace(spec, customers=40, span_days=60, window=(30, 50)), trace)
    assert len(source.data.customers) == 40
    assert source.data.tz == "Australia/Sydney"


def test_citylearn_homes_are_fifteen_hourly_years_whose_seasons_move_their_levels() -> None:
    path = default_citylearn()
    assert path is not None, "tests/vectors/citylearn-2022 is part of the checkout"
    trace = load_citylearn(path)
    assert trace.first_day == dt.date(2016, 8, 1)
    assert trace.first_day.weekday() == 0  # the source's day type 1 (Monday) on that day
    assert trace.houses.shape == (15, 364, MINUTES)
    # kWh an hour as Wh a minute, each hour's value on its 60 minutes
    np.testing.assert_allclose(trace.houses[0, 0, :60], 851.1666666666671 / 60)
    assert (np.diff(trace.houses[:, :, :60], axis=2) == 0).all()
    daily = trace.houses.sum(axis=2) / 1000  # kWh a day
    assert not np.isnan(daily).any()
    assert ((daily.mean(axis=1) > 15) & (daily.mean(axis=1) < 45)).all()  # 19.6 to 40.3
    # the seasons move each home's level: its best 4 weeks hold at least 1.5x its worst
    weeks = daily[:, : 52 * 7].reshape(15, 13, 28).mean(axis=2)
    assert (weeks.max(axis=1) / weeks.min(axis=1) >= 1.5).all()
    spec = next(s for s in SOURCES if s.trace == "citylearn")
    assert spec.role == "tuning"
    source = build(replace(spec, customers=40, span_days=60, window=(30, 50)), trace)
    assert len(source.data.customers) == 40
    assert source.data.slots == 24
    assert source.data.tz == "America/Los_Angeles"


def test_simbench_seasons_slide_every_level_as_a_register_would() -> None:
    """Why own-history detectors cannot tell a SimBench drift from a season: in four of the
    five households the summer's readings sit at the winter's levels times a factor (the
    histogram of their logs slides, and matches once slid), as a scaled register's do;
    the fifth's season changes how often each level is drawn, not where the levels are."""
    path = default_simbench()
    assert path is not None
    trace = load_simbench(path)
    slid = []
    for house in range(5):
        days = trace.houses[house].reshape(366, 96, 15).mean(axis=2)[None]  # 15-min readings
        hists = histograms(days).astype(np.float64)[0]
        winter = hists[:28].sum(axis=0)[None]
        months = np.stack([hists[m : m + 28].sum(axis=0) for m in range(28, 364 - 27, 28)])
        shift, match, _ = align(np.repeat(winter, len(months), axis=0), months)
        slid.append(bool(((shift <= -0.5) & (match >= 0.89)).any()))
        if house == 4:
            assert (shift >= -0.1).all()  # its lower months keep their levels
    assert slid == [True, True, True, True, False]
