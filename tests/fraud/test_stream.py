"""The chunked CSV reader gives what the whole-file reader gives, a chunk at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.fraud.data import FraudDataError
from meterseal.fraud.readers import read_long_csv
from meterseal.fraud.stream import read_long_csv_streaming
from meterseal.fraud.zone import Estimate
from tests.fraud.test_zone import _population

START = 1_790_000_000 - 1_790_000_000 % 86_400  # a UTC midnight (2026-09-22)


def _file(tmp: Path, rows: list[tuple[str, int, str]]) -> Path:
    path = tmp / "readings.csv"
    text = "customer_id,timestamp,kwh\n" + "".join(f"{c},{t},{k}\n" for c, t, k in rows)
    path.write_text(text)
    return path


@settings(max_examples=15, deadline=None)
@given(
    st.integers(0, 1000),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    st.integers(1, 400),
    st.sampled_from([900, 1800]),
)
def test_streaming_equals_the_whole_file_reader(
    tmp_path_factory: pytest.TempPathFactory, seed: int, tz: str, chunk: int, step: int
) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(4):
        start = START + int(rng.integers(0, 3)) * 86_400  # customers start on other days
        for i in range(int(rng.integers(60, 300))):
            value = "" if rng.random() < 0.05 else f"{rng.gamma(2, 0.1):.3f}"
            rows.append((f"C{c}", start + i * step, value))
    rng.shuffle(rows)
    path = _file(tmp_path_factory.mktemp("s"), rows)
    whole = read_long_csv(path, tz=tz)
    streamed = read_long_csv_streaming(path, tz=tz, rows=chunk)
    assert streamed.customers == whole.customers
    assert streamed.first_day == whole.first_day
    np.testing.assert_allclose(streamed.energy, whole.energy, equal_nan=True)


def test_a_clock_change_keeps_both_readings_of_the_repeated_hour(tmp_path: Path) -> None:
    night = 1_792_976_400  # 2026-10-25 01:00 UTC: Berlin repeats 02:00-03:00
    rows = [("a", night - 3600 + i * 900, "1.0" if i < 4 else "3.0") for i in range(12)]
    path = _file(tmp_path, rows)
    whole = read_long_csv(path, tz="Europe/Berlin")
    streamed = read_long_csv_streaming(path, tz="Europe/Berlin", rows=5)
    np.testing.assert_allclose(streamed.energy, whole.energy, equal_nan=True)


def test_a_duplicate_reading_is_one_clear_error(tmp_path: Path) -> None:
    path = _file(tmp_path, [("a", START, "1"), ("b", START, "1"), ("a", START, "2")])
    with pytest.raises(FraudDataError, match="two readings of 'a'"):
        read_long_csv_streaming(path, tz="UTC", rows=2)


@settings(max_examples=8, deadline=None)
@given(st.integers(-11, 12), st.integers(0, 100), st.integers(500, 5000))
def test_auto_zone_estimated_in_the_first_pass_as_the_whole_file_reader_does(
    tmp_path_factory: pytest.TempPathFactory, offset: int, seed: int, chunk: int
) -> None:
    """--tz auto on a file too long to hold: the night trough is summed chunk by chunk (rows
    shuffled), giving the whole-file reader's estimate and days."""
    who, stamps, kwh = _population(offset, seed)
    order = np.random.default_rng(seed).permutation(len(who))
    shuffled = zip(who[order], stamps[order], kwh[order], strict=True)
    rows = [(f"C{w}", int(t), f"{k:.4f}") for w, t, k in shuffled]
    path = _file(tmp_path_factory.mktemp("auto"), rows)
    told: list[Estimate] = []
    whole = read_long_csv(path, tz="auto", on_estimate=told.append)
    streamed = read_long_csv_streaming(path, tz="auto", rows=chunk, on_estimate=told.append)
    assert told[0].offset_hours == told[1].offset_hours == offset
    assert told[0].trough_utc_hour == told[1].trough_utc_hour
    assert told[0].depth == pytest.approx(told[1].depth, rel=1e-9)
    assert streamed.tz == whole.tz == ("UTC" if offset == 0 else f"Etc/GMT{-offset:+d}")
    np.testing.assert_allclose(streamed.energy, whole.energy, equal_nan=True)
