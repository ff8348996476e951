"""The consumption model: determinism, realism, phasor consistency and UCI replay."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from meterseal.errors import ConfigurationError
from meterseal.meter import load, profiles
from meterseal.model import PhasorReport, Reading

JAN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = profiles.PER_DAY


def local_hours(start: dt.datetime, intervals: int, utc_offset_h: int = 1) -> np.ndarray:
    """Local (CET, no DST in winter) hour of each interval."""
    first = int(start.timestamp()) // profiles.INTERVAL
    return ((np.arange(first, first + intervals) * profiles.INTERVAL // 3600) + utc_offset_h) % 24


def phasor(reading: Reading) -> PhasorReport:
    """The reading's phasor report, which must be present."""
    assert reading.phasor is not None
    return reading.phasor


# ---------------------------------------------------------------- determinism and shape
def test_same_seed_same_output_different_seed_different() -> None:
    a = load.interval_energy(3, JAN, 2 * DAY, seed=1)
    assert np.array_equal(a, load.interval_energy(3, JAN, 2 * DAY, seed=1))
    assert not np.array_equal(a, load.interval_energy(3, JAN, 2 * DAY, seed=2))
    assert not np.array_equal(a, load.interval_energy(4, JAN, 2 * DAY, seed=1))


def test_fleet_and_function_agree_and_windows_compose() -> None:
    fleet = load.Fleet(9)
    whole = fleet.energy(range(4), JAN, 10 * DAY)
    assert whole.shape == (4, 10 * DAY)
    assert np.array_equal(whole[2], load.interval_energy(2, JAN, 10 * DAY, seed=9))
    # Any window is generated on its own and gives the same values as a longer one.
    parts = [
        fleet.energy(range(4), JAN + dt.timedelta(minutes=15 * k), 77) for k in range(0, 770, 77)
    ]
    assert np.array_equal(np.concatenate(parts, axis=1), whole[:, :770])
    reversed_order = fleet.energy([3, 2, 1, 0], JAN, 10 * DAY)
    assert np.array_equal(reversed_order[::-1], whole)


def test_energy_is_non_negative_integer_wh() -> None:
    fleet = load.Fleet(5, mix={"H25": 0.6, "G25": 0.2, "L25": 0.1, "UCI": 0.1}, ev_share=0.5)
    energy = fleet.energy(range(100), JAN, 7 * DAY)
    assert energy.dtype == np.int64
    assert energy.min() >= 0
    assert energy.sum() > 0


def test_empty_requests_give_empty_results() -> None:
    fleet = load.Fleet(6)
    assert fleet.energy([], JAN, DAY).shape == (0, DAY)
    assert fleet.energy([1, 2], JAN, 0).shape == (2, 0)
    assert list(fleet.readings("M", 1, JAN, 0)) == []


def test_start_is_floored_and_must_be_aware() -> None:
    late = JAN + dt.timedelta(minutes=7, seconds=30)
    assert np.array_equal(
        load.interval_energy(0, late, DAY, seed=1), load.interval_energy(0, JAN, DAY, seed=1)
    )
    assert profiles.first_interval(int(JAN.timestamp()) + 899) == int(JAN.timestamp()) // 900
    with pytest.raises(ValueError, match="timezone-aware"):
        load.interval_energy(0, dt.datetime(2026, 1, 1), DAY, seed=1)


def test_bad_mix_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        load.Fleet(1, mix={"X99": 1.0})
    with pytest.raises(ConfigurationError):
        load.Fleet(1, mix={"H25": 0.0})


# ---------------------------------------------------------------- realism
def test_january_of_a_3500_kwh_household_is_plausible() -> None:
    fleet = load.Fleet(11, annual_sigma=0.0)  # every household draws exactly 3,500 kWh/yr
    january = fleet.energy(range(200), JAN, 31 * DAY).sum(axis=1) / 1000
    assert np.all((january > 200) & (january < 400)), (january.min(), january.max())
    assert 300 < january.mean() < 400  # BDEW H25 puts about 10 % of the year into January


def test_a_year_adds_up_to_the_drawn_annual_consumption() -> None:
    fleet = load.Fleet(12)
    year = fleet.energy(range(60), JAN, 365 * DAY).sum(axis=1) / 1000
    drawn = np.array([fleet.household(i).annual_kwh for i in range(60)])
    assert np.allclose(year, drawn, rtol=0.08)
    assert 2500 < drawn.mean() < 4500


def test_evening_peak_beats_the_small_hours() -> None:
    energy = load.Fleet(13).energy(range(300), JAN, 14 * DAY)
    hours = local_hours(JAN, 14 * DAY)
    evening = energy[:, (hours >= 18) & (hours < 21)].mean()
    night = energy[:, (hours >= 3) & (hours < 5)].mean()
    assert evening > 1.8 * night


def test_appliance_uses_raise_the_variance() -> None:
    plain = profiles.bdew_energy("H25", JAN, 14 * DAY, annual_kwh=3500)
    quiet = load.Fleet(14, annual_sigma=0.0, appliances=()).energy(range(100), JAN, 14 * DAY)
    busy = load.Fleet(14, annual_sigma=0.0).energy(range(100), JAN, 14 * DAY)
    assert busy.var(axis=1).mean() > 1.5 * quiet.var(axis=1).mean() > 1.5 * plain.var()
    # Same expected energy: appliances are carved out of the 3,500 kWh, not added to it.
    assert busy.sum() == pytest.approx(quiet.sum(), rel=0.05)
    # Kettles and ovens draw kilowatts: some 15-minute intervals exceed 500 Wh.
    assert (busy > 500).mean() > 3 * (quiet > 500).mean()


def test_ev_charging_adds_energy_in_the_evening() -> None:
    without = load.Fleet(15).energy(range(100), JAN, 14 * DAY)
    with_ev = load.Fleet(15, ev_share=1.0).energy(range(100), JAN, 14 * DAY)
    extra_kwh_per_day = (with_ev.sum() - without.sum()) / 100 / 14 / 1000
    assert 2 < extra_kwh_per_day < 15


def test_mix_draws_each_profile() -> None:
    fleet = load.Fleet(16, mix={"H25": 0.5, "G25": 0.3, "L25": 0.2})
    profiles = [fleet.household(i).profile for i in range(600)]
    shares = {p: profiles.count(p) / 600 for p in ("H25", "G25", "L25")}
    assert shares == pytest.approx({"H25": 0.5, "G25": 0.3, "L25": 0.2}, abs=0.07)


# ---------------------------------------------------------------- readings and phasors
def test_readings_are_aligned_and_consecutive() -> None:
    start = JAN + dt.timedelta(hours=5, minutes=3)
    readings = list(load.readings("MTR-000042", 42, start, 200, seed=3, counter_start=1000))
    assert len(readings) == 200
    first = int(JAN.timestamp()) + 5 * 3600
    for i, r in enumerate(readings):
        assert r.meter_id == "MTR-000042"
        assert r.counter == 1000 + i
        assert r.timestamp == first + 900 * i
        assert r.interval == 900
        assert r.phasor is None
    expected = load.interval_energy(42, start, 200, seed=3)
    assert [r.energy_wh for r in readings] == expected.tolist()


@pytest.mark.parametrize(
    ("fleet", "phases"),
    [
        (load.Fleet(21, ev_share=1.0), 1),
        (load.Fleet(21, three_phase_share=1.0), 3),
        (load.Fleet(21, mix={"UCI": 1.0}), 1),
    ],
    ids=["single", "three", "replay"],
)
def test_phasor_reports_are_physically_consistent(fleet: load.Fleet, phases: int) -> None:
    readings = list(fleet.readings("M-1", 7, JAN, 3 * DAY, with_phasor=True))
    replay = fleet.household(7).profile == "UCI"
    for r in readings:
        report = phasor(r)
        assert len(report.phases) == phases
        pf = report.power_factor
        total = sum(ph.active_power for ph in report.phases)
        assert total == pytest.approx(4 * r.energy_wh, abs=1e-6)  # mean power of 15 minutes
        for ph in report.phases:
            assert 207.0 <= ph.voltage <= 253.0  # EN 50160: 230 V +-10 %
            assert ph.active_power == pytest.approx(
                ph.voltage * ph.current * pf, rel=1e-9, abs=1e-9
            )
            assert math.cos(math.radians(ph.angle)) == pytest.approx(pf, rel=1e-9)
            assert (
                math.copysign(1, ph.angle) == math.copysign(1, ph.reactive_power)
                or not ph.reactive_power
            )
        assert 1.0 <= report.thd <= 8.0
        assert 49.85 < report.frequency < 50.15
        assert report.demand >= total - 1e-9
        if not replay:
            assert 0.85 <= pf <= 0.99
    voltages = np.array([ph.voltage for r in readings for ph in phasor(r).phases])
    if not replay:
        assert 228 < voltages.mean() < 232
        assert 1.0 < voltages.std() < 3.0


def test_grid_frequency_is_shared_by_all_meters() -> None:
    fleet = load.Fleet(22)
    a = [phasor(r).frequency for r in fleet.readings("A", 1, JAN, 50, with_phasor=True)]
    b = [phasor(r).frequency for r in fleet.readings("B", 2, JAN, 50, with_phasor=True)]
    assert a == b
    assert 0.005 < float(np.std(a)) < 0.04


# ---------------------------------------------------------------- UCI replay
def test_uci_replay_keeps_time_of_day_and_offsets_meters_by_days() -> None:
    fleet = load.Fleet(31, mix={"UCI": 1.0})
    energy = fleet.energy(range(6), JAN, 7 * DAY)
    trace = profiles.uci_sample().energy_wh
    doubled = np.concatenate([trace, trace])
    offsets = set()
    for row in energy:
        hits = [s for s in range(len(trace)) if np.array_equal(doubled[s : s + len(row)], row)]
        assert len(hits) == 1
        assert hits[0] % DAY == 4  # 00:00 UTC is 01:00 in Paris and Berlin: the 5th slot
        offsets.add(hits[0])
    assert len(offsets) > 1  # meters replay different days
