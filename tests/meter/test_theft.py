"""Labelled theft: each pattern does what Jokar et al. (2016) define, the same way in bulk and
per reading through the simulator's fraud hook."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from meterseal.errors import ConfigurationError
from meterseal.meter.faults import FaultPlan, plan_readings
from meterseal.meter.load import Fleet
from meterseal.meter.theft import (
    DAY_SECONDS,
    DEFAULT_TZ,
    HIGH,
    LOW,
    THEFT_PATTERNS,
    Alteration,
    AlterationHook,
    Change,
    LocalDays,
    Pattern,
    TheftPlan,
    alter_days,
    alter_run,
    local_midnight,
    phase_powers,
)

DAY0 = 20_700  # a Unix day number (2026-09-04)
FLEET = Fleet(11, three_phase_share=0.5)


def _meter(phases: int) -> int:
    return next(i for i in range(100) if FLEET.household(i).phases == phases)


def _honest(meter: int, days: int = 3) -> np.ndarray:
    return FLEET.energy([meter], DAY0 * DAY_SECONDS, days * 96).reshape(days, 96)


def _theft(kind: Pattern | Change, meter: int = 0, **changes: object) -> Alteration:
    base = Alteration(meter, kind, DAY0 + 1, factor=0.5, window=(20, 60), phase=1, seed=4)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_days_before_the_onset_are_untouched() -> None:
    honest = _honest(0)
    for kind in THEFT_PATTERNS:
        altered, _ = alter_days(_theft(kind), DAY0, honest)
        np.testing.assert_array_equal(altered[0], honest[0])


def test_each_pattern_as_defined() -> None:
    x = _honest(0)[1].astype(float)
    mean = x.mean()

    def day(kind: Pattern) -> npt.NDArray[np.float64]:
        return np.asarray(alter_days(_theft(kind), DAY0, _honest(0))[0][1], np.float64)

    np.testing.assert_array_equal(day(Pattern.SCALED), np.rint(0.5 * x))
    zeroed = day(Pattern.ZEROED)
    assert (zeroed[20:60] == 0).all()
    np.testing.assert_array_equal(np.delete(zeroed, range(20, 60)), np.delete(x, range(20, 60)))
    ratio = day(Pattern.RANDOM_SCALED)[x > 50] / x[x > 50]
    assert ratio.min() > LOW - 0.02
    assert ratio.max() < HIGH + 0.02
    assert ratio.std() > 0.1
    per = day(Pattern.MEAN_RANDOM) / mean
    assert per.min() > LOW - 0.02
    assert per.max() < HIGH + 0.02
    np.testing.assert_array_equal(day(Pattern.CONSTANT_MEAN), np.full(96, np.rint(mean)))
    np.testing.assert_array_equal(day(Pattern.REVERSED), x[::-1])


def test_phase_current_under_reports_one_phase_of_three() -> None:
    meter = _meter(3)
    readings = list(FLEET.readings("M", meter, DAY0 * DAY_SECONDS, 96 * 2, with_phasor=True))
    power = np.stack([phase_powers(r.phasor) for r in readings if r.phasor])
    wh = np.array([r.energy_wh for r in readings]).reshape(2, 96)
    altered, altered_power = alter_days(
        _theft(Pattern.PHASE_CURRENT, meter), DAY0, wh, power.reshape(2, 96, 3)
    )
    assert altered_power is not None
    np.testing.assert_allclose(altered_power[1, :, 1], 0.5 * power.reshape(2, 96, 3)[1, :, 1])
    np.testing.assert_array_equal(
        altered_power[1, :, [0, 2]], power.reshape(2, 96, 3)[1, :, [0, 2]]
    )
    lost = power.reshape(2, 96, 3)[1, :, 1].sum() / 4 * 0.5
    assert wh[1].sum() - altered[1].sum() == pytest.approx(lost, abs=96)


@pytest.mark.parametrize("kind", [*THEFT_PATTERNS, Change.HOLIDAY, Change.NEW_APPLIANCE], ids=str)
@pytest.mark.parametrize("phases", [1, 3])
def test_the_hook_alters_readings_as_the_bulk_path_does(
    kind: Pattern | Change, phases: int
) -> None:
    meter = _meter(phases)
    alteration = _theft(kind, meter, end_day=DAY0 + 2 if kind is Change.HOLIDAY else None)
    start = local_midnight(FLEET.tz, DAY0)  # the hook alters the meter's own (local) days
    readings = list(FLEET.readings("M", meter, start, 96 * 3, with_phasor=True))
    hook = AlterationHook(FLEET, alteration)
    random.Random(1).shuffle(shuffled := list(readings))  # any order: each day is regenerated
    sent = {r.counter: r for r in map(hook, shuffled)}
    via_hook = np.array([sent[r.counter].energy_wh for r in readings]).reshape(3, 96)
    power = np.stack([phase_powers(r.phasor) for r in readings if r.phasor]).reshape(3, 96, -1)
    wh = np.array([r.energy_wh for r in readings]).reshape(3, 96)
    bulk, bulk_power = alter_days(alteration, DAY0, wh, power)
    np.testing.assert_array_equal(via_hook, bulk)
    assert bulk_power is not None
    for r in readings:
        report = sent[r.counter].phasor
        assert report is not None
        day, slot = divmod(r.counter - readings[0].counter, 96)
        np.testing.assert_allclose(phase_powers(report), bulk_power[day, slot], atol=1e-6)
        # The report stays consistent: each phase's P = V * I * pf as the meter measures it.
        for p in report.phases:
            assert p.active_power == pytest.approx(
                p.voltage * p.current * abs(np.cos(np.radians(p.angle))), rel=1e-6, abs=1e-6
            )


def test_the_hook_plugs_into_the_unchanged_sender() -> None:
    alteration = _theft(Pattern.SCALED)
    readings = list(FLEET.readings("M", 0, local_midnight(FLEET.tz, DAY0), 96 * 2))
    planned = plan_readings(
        readings, FaultPlan(), random.Random(1), AlterationHook(FLEET, alteration)
    )
    sent = np.array([p.reading.energy_wh for p in planned])
    honest = np.array([r.energy_wh for r in readings])
    np.testing.assert_array_equal(sent[:96], honest[:96])
    np.testing.assert_array_equal(sent[96:], np.rint(0.5 * honest[96:]))


def test_a_thief_reverses_its_meters_local_day() -> None:
    # Europe/Berlin in September is UTC+2: the meter's day runs 22:00-22:00 UTC.
    start = local_midnight(FLEET.tz, DAY0 + 1)
    assert start == (DAY0 + 1) * DAY_SECONDS - 7_200
    readings = list(FLEET.readings("M", 0, start, 96))
    sent = [AlterationHook(FLEET, _theft(Pattern.REVERSED))(r).energy_wh for r in readings]
    assert sent == [r.energy_wh for r in readings][::-1]


@pytest.mark.parametrize(
    ("day", "length", "skipped"),
    [(20_541, 92, range(8, 12)), (20_751, 100, range(0))],  # 2026-03-29, 2026-10-25
    ids=("spring", "autumn"),
)
def test_days_clocks_change_are_whole_local_days(day: int, length: int, skipped: range) -> None:
    days = LocalDays.of("Europe/Berlin", day - 1, 3)
    assert np.diff(days.bounds).tolist() == [96, length, 96]
    clock = days.clock[96 : 96 + length]
    assert set(range(96)) - set(clock.tolist()) == set(skipped)
    alteration = _theft(Pattern.REVERSED, onset_day=day, end_day=day + 1)
    readings = list(FLEET.readings("M", 0, days.start, days.intervals))
    honest = np.array([r.energy_wh for r in readings])
    bulk, _ = alter_run(alteration, days, honest)
    via_hook = [AlterationHook(FLEET, alteration)(r).energy_wh for r in readings]
    np.testing.assert_array_equal(bulk, via_hook)
    np.testing.assert_array_equal(bulk[96 : 96 + length], honest[96 : 96 + length][::-1])
    np.testing.assert_array_equal(np.delete(bulk, range(96, 96 + length)),
                                  np.delete(honest, range(96, 96 + length)))  # fmt: skip


def test_windows_are_wall_clock_times_on_a_short_day() -> None:
    days = LocalDays.of("Europe/Berlin", 20_541, 1)  # 23 hours
    alteration = _theft(Pattern.ZEROED, onset_day=20_541, window=(12, 20))  # 03:00-05:00
    honest = np.full(days.intervals, 100.0)
    zeroed, _ = alter_run(alteration, days, honest)
    assert np.flatnonzero(zeroed == 0).tolist() == list(range(8, 16))  # 4 slots earlier


def test_an_unknown_zone_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown time zone 'Nowhere/Land'"):
        LocalDays.of("Nowhere/Land", DAY0, 1)


def test_the_hook_refuses_readings_of_another_meter() -> None:
    readings = list(FLEET.readings("M", 1, (DAY0 + 1) * DAY_SECONDS, 96))
    hook = AlterationHook(FLEET, _theft(Pattern.SCALED, meter=0))
    with pytest.raises(ConfigurationError, match="not meter 0 of this fleet"):
        [hook(r) for r in readings]


def test_the_plan_labels_a_balanced_share_from_random_onsets() -> None:
    plan = TheftPlan(share=0.14, holiday_share=0.05, appliance_share=0.05, seed=2)
    assigned = plan.assign(range(1000), DAY0, 30, phases=lambda i: 1 + 2 * (i % 2))
    thefts = [a for a in assigned.values() if a.theft]
    assert len(thefts) == 140
    assert set(Counter(a.kind for a in thefts).values()) == {20}
    assert Counter(a.kind for a in assigned.values() if not a.theft) == {
        Change.HOLIDAY: 50,
        Change.NEW_APPLIANCE: 50,
    }
    onsets = [a.onset_day - DAY0 for a in thefts]
    assert min(onsets) >= plan.min_before
    assert max(onsets) <= 30 - plan.min_after
    assert len(set(onsets)) > 10
    for a in thefts:
        assert LOW <= a.factor <= HIGH
        assert a.window[1] - a.window[0] >= 16
        assert a.phase < 1 + 2 * (a.meter_index % 2)
    again = plan.assign(range(1000), DAY0, 30, phases=lambda i: 1 + 2 * (i % 2))
    assert again == assigned


@pytest.mark.parametrize(
    ("shares", "days"),
    [({"share": 0.7, "holiday_share": 0.4}, 30), ({"share": -0.1}, 30), ({}, 8)],
)
def test_impossible_plans_are_refused(shares: dict[str, float], days: int) -> None:
    with pytest.raises(ConfigurationError):
        TheftPlan(**shares).assign(range(10), DAY0, days)  # type: ignore[arg-type]


def test_the_default_zone_is_the_fleets() -> None:
    assert Fleet(1).tz == DEFAULT_TZ
