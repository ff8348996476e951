"""Time slots and the consumption shapes of the load model: BDEW 2025 profiles, the UCI sample.

Sans-IO but for the shipped sample file: the 15-minute interval grid (absolute interval
indices, their local-time slots), the BDEW standard load profiles' share of a year's energy
in each slot, and the real household the replay meters of `meter.load` repeat. See
docs/load-model.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from meterseal.meter.randomness import F64, I64

INTERVAL = 900  # seconds
PER_DAY = 96
UCI_COLUMNS = ("start", "energy_wh", "voltage_v", "current_a", "reactive_var", "max_power_w")
UCI_ROWS = 56 * PER_DAY


@dataclass(frozen=True, slots=True)
class UciSample:
    """The shipped 15-minute sample of the UCI household (local Paris time, see SOURCE.md)."""

    start: npt.NDArray[np.datetime64]
    energy_wh: I64
    voltage_v: F64
    current_a: F64
    reactive_var: F64
    max_power_w: I64


def holidays(year: int) -> list[dt.date]:
    """German nationwide public holidays, treated as Sundays by the BDEW profiles."""
    import pandas as pd

    easter = (pd.Timestamp(year, 1, 1) + pd.offsets.Easter()).date()
    fixed = [dt.date(year, m, d) for m, d in ((1, 1), (5, 1), (10, 3), (12, 25), (12, 26))]
    moving = [easter + dt.timedelta(days=n) for n in (-2, 1, 39, 50)]
    return sorted(fixed + moving)


@functools.lru_cache(maxsize=16)
def _year_shares(profile: str, year: int) -> F64:
    """Share of the annual energy in each local 15-minute slot of `year` (sums to 1)."""
    import pandas as pd
    from demandlib import bdew

    days = 366 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 365
    index = pd.date_range(f"{year}-01-01", periods=days * PER_DAY, freq="15min")
    with warnings.catch_warnings():  # demandlib 0.2.2 still uses pandas' `inplace=True`
        warnings.filterwarnings("ignore", message="The inplace keyword")
        series = getattr(bdew, profile)(index, holidays=holidays(year))
    values: F64 = np.asarray(series, np.float64)
    shares: F64 = values / float(values.sum())
    shares.setflags(write=False)
    return shares


@dataclass(frozen=True, slots=True)
class Window:
    """Local-time slots of a window of absolute 15-minute intervals, and where each year starts."""

    local: I64  # local-time slot index since 1970-01-01 00:00 local
    year: I64
    slot_in_year: I64


@functools.lru_cache(maxsize=16)
def local_window(first: int, count: int, tz: str) -> Window:
    """The local slots in zone `tz` of intervals first .. first + count - 1 (cached)."""
    import pandas as pd

    t = np.arange(first, first + count, dtype=np.int64)
    utc = pd.DatetimeIndex((t * INTERVAL).astype("datetime64[s]"), tz="UTC")
    naive = utc.tz_convert(tz).tz_localize(None)
    local = naive.as_unit("s").asi8 // INTERVAL
    years = (local // PER_DAY).astype("datetime64[D]").astype("datetime64[Y]")
    jan1 = years.astype("datetime64[D]").astype(np.int64) * PER_DAY
    return Window(local, years.astype(np.int64) + 1970, local - jan1)


@functools.lru_cache(maxsize=32)
def profile_shares(profile: str, first: int, count: int, tz: str) -> F64:
    """Share of the annual energy of a BDEW profile in each interval of a window (cached)."""
    w = local_window(first, count, tz)
    out = np.empty(count)
    for y in np.unique(w.year).tolist():
        mask = w.year == y
        shares = _year_shares(profile, y)
        out[mask] = shares[np.minimum(w.slot_in_year[mask], len(shares) - 1)]
    out.setflags(write=False)
    return out


def first_interval(start: dt.datetime | int) -> int:
    """Absolute 15-minute interval index of `start` (aware datetime or Unix s), floored."""
    if isinstance(start, dt.datetime):
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        return math.floor(start.timestamp()) // INTERVAL
    return start // INTERVAL


def bdew_energy(
    profile: str,
    start: dt.datetime | int,
    intervals: int,
    *,
    annual_kwh: float,
    tz: str = "Europe/Berlin",
) -> F64:
    """The plain BDEW profile in Wh per interval for a consumer of `annual_kwh` (no noise)."""
    return annual_kwh * 1000.0 * profile_shares(profile, first_interval(start), intervals, tz)


@functools.lru_cache(maxsize=1)
def uci_sample() -> UciSample:
    """Load the shipped UCI sample (cached)."""
    import pandas as pd

    with resources.files("meterseal.meter").joinpath("data/uci_sample.csv.gz").open("rb") as f:
        frame = pd.read_csv(f, compression="gzip", parse_dates=["start"])
    return UciSample(
        start=frame["start"].to_numpy("datetime64[m]"),
        energy_wh=frame["energy_wh"].to_numpy(np.int64),
        voltage_v=frame["voltage_v"].to_numpy(np.float64),
        current_a=frame["current_a"].to_numpy(np.float64),
        reactive_var=frame["reactive_var"].to_numpy(np.float64),
        max_power_w=frame["max_power_w"].to_numpy(np.int64),
    )
