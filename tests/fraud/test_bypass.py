"""A bypassed window of each day, against a household that moved or left; a drift that
scales every reading, against a season that lowers the standby load alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from meterseal.fraud import bypass, changepoint, drift
from meterseal.fraud.features import _peak

F64 = npt.NDArray[np.float64]
DAYS = 60
ONSET = 30


def _household(seed: int, shift: int = 0) -> F64:
    """(days, 24) hourly kWh: a night standby, a morning and an evening peak, noise; the
    daily rhythm `shift` hours later."""
    rng = np.random.default_rng(seed)
    hour = np.arange(24)
    shape = 0.2 + 0.5 * np.exp(-((hour - 8) ** 2) / 4) + 0.9 * np.exp(-((hour - 19) ** 2) / 6)
    return np.roll(shape, shift)[None, :] * rng.lognormal(0.0, 0.15, (DAYS, 24))


def _drop(hours: F64) -> changepoint.Step:
    return bypass.profile_drop(hours, np.zeros(hours.shape[:2], bool))


def test_a_bypassed_window_is_found_and_a_moved_or_absent_evening_is_not() -> None:
    thief = _household(1)
    thief[ONSET:, 17:22] *= 0.2  # five evening hours barely counted from the onset on
    moved = _household(2)
    moved[ONSET:, 8:13] += moved[ONSET:, 17:22]  # the evening's use moved to the morning
    moved[ONSET:, 17:22] *= 0.2
    away = _household(3)
    away[ONSET:] = 0.2 * away[ONSET:] + 0.1  # standby only: the whole day fell
    honest = _household(4)
    found = _drop(np.stack([thief, moved, away, honest]))
    assert found.t[0] > 10
    assert abs(int(found.onset[0]) - ONSET) <= 2
    assert found.delta[0] > 1.2  # log units: the window kept a fifth of its energy
    assert found.t[2] < 1  # the absent household
    assert found.t[3] < 1  # the unchanged one
    # Moving the evening raised the rest of the day: it counts, but far less than a bypass.
    assert found.t[0] > 1.5 * found.t[1]


def test_a_bypass_ranks_above_households_whose_rhythm_or_season_moved() -> None:
    """Honest households of every rhythm (shifted up to two hours), some whose rhythm
    moves by two hours mid-way (a new job, a clock change), whose evenings fade with the
    season or whose every hour changes with a new routine; one thief bypassing four night
    hours, its own rhythm shifted too."""
    rng = np.random.default_rng(9)
    honest = [_household(10 + k, int(rng.integers(-2, 3))) for k in range(24)]
    for k in range(0, 24, 3):
        honest[k][ONSET:] = np.roll(honest[k][ONSET:], int(rng.choice([-2, 2])), axis=1)
    for k in range(1, 24, 3):
        honest[k][:, 16:23] *= np.linspace(1.6, 0.6, DAYS)[:, None]
    for k in range(2, 24, 3):  # a new routine: every hour of the day changes its use
        honest[k][ONSET:] *= rng.lognormal(0.0, 0.8, 24)[None, :]
    thief = _household(40, 2)
    thief[ONSET:, 1:5] *= 0.25
    found = _drop(np.stack([*honest, thief]))
    assert int(np.argmax(found.t)) == len(honest)
    assert found.t[-1] > 2 * found.t[:-1].max()


def test_missing_days_and_a_late_start_change_nothing() -> None:
    thief = _household(5)
    thief[ONSET:, 1:5] *= 0.1
    late = np.zeros((DAYS + 20, 24))
    late[20:] = thief
    missing = np.zeros((2, DAYS + 20), bool)
    missing[1, :20] = True
    padded = np.stack([np.vstack([thief, np.zeros((20, 24))]), late])
    missing[0, DAYS:] = True
    found = bypass.profile_drop(padded, missing)
    assert found.t[0] > 10
    assert abs(found.t[0] - found.t[1]) < 1e-6 * max(found.t[0], 1.0)
    assert found.onset[1] == found.onset[0] + 20


def test_quarter_hours_are_read_as_hours_and_daily_data_has_no_window() -> None:
    thief = _household(8)
    thief[ONSET:, 6:10] *= 0.1
    quarters = np.repeat(thief, 4, axis=1) / 4
    hourly, fine = _drop(thief[None]), _drop(quarters[None])
    assert hourly.t[0] > 10
    assert fine.t[0] == pytest.approx(hourly.t[0])
    found = _drop(np.ones((3, DAYS, 1)))
    assert (found.t == 0).all()
    assert (found.onset == -1).all()


def test_a_drift_lowers_the_busiest_hour_and_a_season_does_not() -> None:
    share = np.zeros(DAYS)
    share[ONSET:] = 0.5 * np.arange(1, DAYS - ONSET + 1) / (DAYS - ONSET)
    register = _household(6) * (1.0 - share)[:, None]  # every reading scaled
    season = _household(7)
    season[:, :6] *= (1.0 - share)[:, None]  # the night's load fades, the peaks stay
    hours = np.stack([register, season]).astype(np.float32)
    peak = drift.ramp(_peak(hours, hours.sum(2).astype(np.float64)), floor=0.05, margin=0.2)
    assert peak.t[0] > 3
    assert peak.t[1] < 1
