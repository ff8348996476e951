"""The load model's time slots and shapes: BDEW profiles over DST and holidays, the UCI sample."""

from __future__ import annotations

import datetime as dt
import gzip
from importlib import resources

import numpy as np
import pytest

from meterseal.meter import profiles

DAY = profiles.PER_DAY


def test_bdew_profile_over_a_dst_change_and_holidays() -> None:
    march = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)  # DST starts 2026-03-29 in Berlin
    plain = profiles.bdew_energy("H25", march, 3 * DAY, annual_kwh=1000)
    assert plain.shape == (3 * DAY,)
    assert np.all(np.isfinite(plain))
    assert plain.min() > 0
    year = profiles.bdew_energy(
        "H25", dt.datetime(2025, 12, 31, 23, tzinfo=dt.UTC), 365 * DAY, annual_kwh=1
    )
    assert year.sum() == pytest.approx(1000, rel=1e-3)
    assert dt.date(2026, 4, 3) in profiles.holidays(2026)  # Good Friday
    assert dt.date(2026, 4, 6) in profiles.holidays(2026)  # Easter Monday


def test_uci_sample_has_the_documented_columns_and_rows() -> None:
    path = resources.files("meterseal.meter").joinpath("data/uci_sample.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        header = text.readline().strip().split(",")
        rows = sum(1 for _ in text)
    assert tuple(header) == profiles.UCI_COLUMNS
    assert rows == profiles.UCI_ROWS == 5376
    assert len(path.read_bytes()) < 300_000
    sample = profiles.uci_sample()
    assert sample.start[0] == np.datetime64("2007-01-08T00:00")
    assert np.all(np.diff(sample.start) == np.timedelta64(15, "m"))
    assert sample.energy_wh.sum() / 1000 == pytest.approx(1908.2, abs=0.1)
    assert sample.energy_wh.min() >= 0
    assert np.all(sample.max_power_w >= sample.energy_wh * 4 - 4)  # peak minute >= mean
    assert sample.voltage_v.min() > 200
    assert sample.voltage_v.max() < 255
