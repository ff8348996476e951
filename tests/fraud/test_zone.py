"""`--tz auto`: a fixed UTC offset estimated from the customers' night trough."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud.zone import estimate


def _population(offset: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30 customers, 14 days of 15-minute readings whose local night trough is at 04:00."""
    rng = np.random.default_rng(seed)
    stamps = np.arange(14 * 96) * 900 + 1_700_006_400  # from a UTC midnight
    local_hour = ((stamps + offset * 3600) % 86_400) / 3600
    shape = 1.0 + 0.8 * np.cos((local_hour - 16.0) / 24.0 * 2 * np.pi)  # lowest at 04:00
    who = np.repeat(np.arange(30), len(stamps))
    kwh = np.concatenate(
        [rng.uniform(0.2, 3) * shape * rng.lognormal(0, 0.3, len(stamps)) for _ in range(30)]
    )
    return who, np.tile(stamps, 30), kwh


@settings(max_examples=20, deadline=None)
@given(st.integers(-11, 12), st.integers(0, 100))
def test_the_offset_of_the_night_trough_is_found(offset: int, seed: int) -> None:
    found = estimate(*_population(offset, seed))
    assert found.offset_hours == offset
    assert found.zone == ("UTC" if offset == 0 else f"Etc/GMT{-offset:+d}")
    assert "pass --tz NAME" in found.describe()
