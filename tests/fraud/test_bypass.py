"""A bypassed window of each day, against a household that moved or left; a drift that
scales every reading, against a season that lowers the standby load alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterseal.fraud import bypass, drift
from meterseal.fraud.features import _peak, kept

F64 = npt.NDArray[np.float64]
DAYS = 60
ONSET = 30


def _household(seed: int) -> F64:
    """(days, 24) hourly kWh: a night standby, a morning and an evening peak, noise."""
    rng = np.random.default_rng(seed)
    hour = np.arange(24)
    shape = 0.2 + 0.5 * np.exp(-((hour - 8) ** 2) / 4) + 0.9 * np.exp(-((hour - 19) ** 2) / 6)
    return shape[None, :] * rng.lognormal(0.0, 0.15, (DAYS, 24))


def _drop(hours: F64) -> bypass.changepoint.Step:
    missing = np.zeros(hours.shape[:2], bool)
    return bypass.window_drop(hours, missing, lambda y, onset: kept(y, onset))


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
    assert found.t[2] < 1  # the absent household
    assert found.t[3] < 1  # the unchanged one
    # Moving the evening raised the rest of the day: it counts, but far less than a bypass.
    assert found.t[0] > 1.5 * found.t[1]


def test_missing_days_and_a_late_start_change_nothing() -> None:
    thief = _household(5)
    thief[ONSET:, 1:5] *= 0.1
    late = np.zeros((DAYS + 20, 24))
    late[20:] = thief
    missing = np.zeros((2, DAYS + 20), bool)
    missing[1, :20] = True
    padded = np.stack([np.vstack([thief, np.zeros((20, 24))]), late])
    missing[0, DAYS:] = True
    found = bypass.window_drop(padded, missing, lambda y, onset: kept(y, onset))
    assert abs(found.t[0] - found.t[1]) < 1e-6 * max(found.t[0], 1.0)
    assert found.onset[1] == found.onset[0] + 20


def test_daily_data_has_no_window() -> None:
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
