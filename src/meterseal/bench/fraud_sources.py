"""Labelled evaluation sources for `bench fraud` built from a real household trace.

The trace: UCI "Individual household electric power consumption" (Hebrail and Berard;
one house near Paris, one reading a minute, 2006-12 to 2010-11, CC BY 4.0), shipped in
the shared data folder. Its minutes are split by date: sources built from days up to
`TUNING_END` are the *tuning* set (what the detectors' constants may be chosen on); sources
from the days after it are the *evaluation* set, never looked at while choosing them.

Each customer is a window of the trace on a calendar grid of its own source: its own
length, start and end date (gaps at either end), a random household scale and a shift of
its daily rhythm of up to two hours. Two ways of making households from the one house:

* windows: a run of the trace's days (any season: customers side by side on the grid come
  from different times of year), days copied weekday to weekday;
* composite: the house's four channels (kitchen, laundry, water heater and air
  conditioning, the rest) each from another run of days, each with its own weight: the
  households differ in appliances as well as in level.

A second, independent trace: SimBench's household load profiles (German, 2016, 15 minutes,
five households, ODbL; `tests/vectors/simbench-households/`), made into windows the same
way (each customer a window of one of the five). No constant was chosen on it.

A second tuning trace: fifteen homes of CityLearn 2.0.0's 2022 challenge set (California,
a year from August to July, hourly, MIT; `tests/vectors/citylearn-2022/`), windows of one
of the fifteen. Its homes' seasons move their levels as SimBench's do (the UCI house's
keep them), so the detectors' honest tail on such households is seen at tuning time.

Thieves are injected by `fraud_inject` (no detector code) on the customer's own local
days; the labelled readings are then turned into UTC instants in the source's time zone
and read back into days by `fraud.data.from_arrays`, as a user's CSV is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meterseal.bench.fraud_inject import PATTERNS, inject
from meterseal.fraud.data import Consumption, from_arrays

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
UCI_NAME = "uci_household_power_1min.csv.gz"
SIMBENCH_NAME = "simbench_households_2016.csv.gz"
CITYLEARN_NAME = "citylearn_2022_homes.csv.gz"
SIMBENCH_MEAN_KW = 0.45  # a household's mean draw (about 3,900 kWh a year) before its scale
TUNING_END = dt.date(2008, 6, 30)  # trace days up to here: tuning; after: evaluation
MINUTES = 1_440


@dataclass(frozen=True)
class Trace:
    """Households' readings in Wh per minute on whole local days; NaN missing."""

    first_day: dt.date
    houses: F64  # (houses, days, 1440): each household's total
    channels: F64 | None = None  # (4, days, 1440): kitchen, laundry, heater + AC, the rest

    @property
    def total(self) -> F64:
        """The first household's days (the UCI trace has one)."""
        out: F64 = self.houses[0]
        return out

    def days_between(self, first: dt.date, last: dt.date) -> tuple[int, int]:
        """Indices [lo, hi) of the trace's days in [first, last]."""
        lo = max((first - self.first_day).days, 0)
        hi = min((last - self.first_day).days + 1, self.houses.shape[1])
        return lo, hi


def _nearest(relative: str) -> Path | None:
    """The file at `relative` under the nearest folder above this module that has it."""
    for folder in Path(__file__).resolve().parents:
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def default_trace() -> Path | None:
    """The trace in the nearest `shared/data` above this checkout (None: not there)."""
    return _nearest(f"shared/data/{UCI_NAME}")


@lru_cache(maxsize=1)
def load_trace(path: Path) -> Trace:
    """The UCI minute trace as whole local days (a minute absent from the file is NaN)."""
    import pandas as pd

    frame = pd.read_csv(path, parse_dates=["date_time"], na_values=["?", ""])
    stamps = frame["date_time"].to_numpy("datetime64[m]")
    day0 = stamps.min().astype("datetime64[D]")
    index = (stamps - day0.astype("datetime64[m]")).astype(np.int64)
    days = int(index.max()) // MINUTES + 1
    total = np.full(days * MINUTES, np.nan)
    total[index] = frame["Global_active_power"].to_numpy(np.float64) * 1000.0 / 60.0
    subs = np.full((3, days * MINUTES), np.nan)
    for k in range(3):
        subs[k, index] = frame[f"Sub_metering_{k + 1}"].to_numpy(np.float64)
    rest = np.maximum(total - np.nansum(subs, axis=0), 0.0)
    rest[np.isnan(total)] = np.nan
    channels = np.concatenate([subs, rest[None]]).reshape(4, days, MINUTES)
    first = dt.date.fromisoformat(str(day0))
    return Trace(first, total.reshape(1, days, MINUTES), channels)


def default_simbench() -> Path | None:
    """SimBench's household profiles vendored in this checkout's tests (None: not there)."""
    return _nearest(f"tests/vectors/simbench-households/{SIMBENCH_NAME}")


@lru_cache(maxsize=1)
def load_simbench(path: Path) -> Trace:
    """SimBench's five household profiles of 2016 (15 min, per unit of peak) as minutes.

    Each household is scaled to a mean of `SIMBENCH_MEAN_KW`; a 15-minute value holds for
    each of its minutes (the rhythm shift of `_household` then blends neighbouring slots)."""
    import pandas as pd

    frame = pd.read_csv(path)
    first = dt.datetime.strptime(str(frame["time"].iloc[0]), "%d.%m.%Y %H:%M").date()
    values = frame.drop(columns="time").to_numpy(np.float64).T  # (houses, slots)
    values *= SIMBENCH_MEAN_KW / values.mean(axis=1, keepdims=True)
    per_minute = np.repeat(values, 15, axis=1) * 1000.0 / 60.0  # kW over a minute -> Wh
    houses = per_minute.reshape(values.shape[0], -1, MINUTES)
    return Trace(first, houses)


def default_citylearn() -> Path | None:
    """CityLearn's 2022 homes vendored in this checkout's tests (None: not there)."""
    return _nearest(f"tests/vectors/citylearn-2022/{CITYLEARN_NAME}")


@lru_cache(maxsize=1)
def load_citylearn(path: Path) -> Trace:
    """CityLearn's fifteen homes (kWh an hour, whole local days) as Wh per minute."""
    import pandas as pd

    frame = pd.read_csv(path)
    first = dt.date.fromisoformat(str(frame["time"].iloc[0])[:10])
    hours = frame.drop(columns="time").to_numpy(np.float64).T  # (homes, hours)
    per_minute = np.repeat(hours, 60, axis=1) * 1000.0 / 60.0
    return Trace(first, per_minute.reshape(hours.shape[0], -1, MINUTES))


@dataclass(frozen=True)
class SourceSpec:
    """How one labelled source is made from the trace."""

    name: str
    role: str  # "tuning" or "evaluation"
    tz: str
    slot_minutes: int
    first_day: dt.date  # the grid's first local day
    span_days: int
    window: tuple[int, int]  # each customer's days: at least, at most
    trace_days: tuple[dt.date, dt.date]  # the trace's days drawn from
    composite: bool
    customers: int = 600
    trace: str = "uci"  # "uci" (one house), "simbench" (five households), "citylearn" (15)
    share: float = 0.12
    seed: int = 1
    months: tuple[int, ...] = ()  # composite: components start in these months (all: ())

    def describe(self) -> str:
        """One line for the bench's notes."""
        kind = (
            "composite households"
            if self.composite
            else "windows of five SimBench households"
            if self.trace == "simbench"
            else "windows of fifteen CityLearn homes"
            if self.trace == "citylearn"
            else "windows of the house"
        )
        first, last = self.trace_days
        return (
            f"{self.name} [{self.role}]: {kind}, trace days {first}..{last}, "
            f"{self.slot_minutes}-min readings, {self.tz}, {self.customers} customers over "
            f"{self.span_days} days from {self.first_day}, {self.window[0]}-{self.window[1]} "
            f"days each"
        )


@dataclass(frozen=True)
class Source:
    """A labelled population: its data as read back, the truth and each thief's pattern."""

    spec: SourceSpec
    data: Consumption
    thief: B
    patterns: list[str]


def _slots(minutes: F64, slot_minutes: int) -> F64:
    """Per-minute Wh (..., 1440) to kWh per slot; a slot missing half its minutes is NaN."""
    shaped = minutes.reshape(*minutes.shape[:-1], MINUTES // slot_minutes, slot_minutes)
    present = (~np.isnan(shaped)).sum(-1)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(present[..., None] > 0, shaped, 0.0), axis=-1)
    out: F64 = np.where(present * 2 >= slot_minutes, mean * slot_minutes / 1000.0, np.nan)
    return out


def _starts(trace: Trace, spec: SourceSpec, length: int, rng: np.random.Generator) -> int:
    """A first trace day for a run of `length` days within the spec's trace days."""
    lo, hi = trace.days_between(*spec.trace_days)
    allowed = np.arange(lo, max(hi - length, lo + 1))
    if spec.months:
        months = np.array([(trace.first_day + dt.timedelta(int(d))).month for d in allowed])
        allowed = allowed[np.isin(months, spec.months)]
    return int(rng.choice(allowed))


def _household(
    trace: Trace, spec: SourceSpec, length: int, grid_weekday: int, rng: np.random.Generator
) -> F64:
    """One customer's days (length, slots) in kWh: a window or a composite, scaled and
    shifted in time of day."""

    def run(minutes: F64) -> F64:
        start = _starts(trace, spec, length + 7, rng)
        weekday = (trace.first_day + dt.timedelta(start)).weekday()
        start += (grid_weekday - weekday) % 7  # weekday to weekday
        return minutes[start : start + length]

    if spec.composite:
        channels = trace.channels
        if channels is None:
            raise ValueError(f"{spec.name}: composite households need a trace with channels")
        weights = (rng.uniform(0, 2), rng.uniform(0, 2), rng.uniform(0, 1.5), rng.uniform(0.5, 1.5))
        minutes = sum(w * run(channels[k]) for k, w in enumerate(weights))
    else:  # a window of one household (drawn when the trace has several)
        house = int(rng.integers(trace.houses.shape[0])) if trace.houses.shape[0] > 1 else 0
        minutes = run(trace.houses[house])
    shift = int(rng.integers(-120, 121))
    flat = np.roll(np.asarray(minutes, np.float64).ravel(), shift)
    scale = float(rng.lognormal(0.0, 0.4))
    return _slots(flat.reshape(length, MINUTES), spec.slot_minutes) * scale


def build(spec: SourceSpec, trace: Trace) -> Source:
    """The labelled source: households, thieves, then the user's path to days."""
    import pandas as pd

    rng = np.random.default_rng(spec.seed)
    slots = MINUTES // spec.slot_minutes
    grid = np.full((spec.customers, spec.span_days, slots), np.nan)
    thieves = round(spec.share * spec.customers)
    names = list(PATTERNS)
    pattern_of = [names[i % len(names)] for i in range(thieves)] + [""] * (spec.customers - thieves)
    order = rng.permutation(spec.customers)
    patterns = [pattern_of[int(i)] for i in np.argsort(order)]
    for c in range(spec.customers):
        length = int(rng.integers(spec.window[0], spec.window[1] + 1))
        start = int(rng.integers(0, spec.span_days - length + 1))
        weekday = (spec.first_day + dt.timedelta(start)).weekday()
        days = _household(trace, spec, length, weekday, rng)
        if patterns[c]:
            days = inject(days, patterns[c], rng)
        grid[c, start : start + length] = days
    local = pd.date_range(
        pd.Timestamp(spec.first_day), periods=spec.span_days * slots, freq=f"{spec.slot_minutes}min"
    )
    utc = local.tz_localize(spec.tz, ambiguous="NaT", nonexistent="NaT")
    keep = ~np.asarray(utc.isna())
    seconds = np.asarray(utc[keep].as_unit("s").asi8, np.int64)
    flat = grid.reshape(spec.customers, -1)[:, keep]
    who, when = np.nonzero(~np.isnan(flat))
    ids = np.array([f"{spec.name[:3].upper()}{c:05d}" for c in range(spec.customers)], object)
    data = from_arrays(list(ids[who]), seconds[when], flat[who, when], tz=spec.tz)
    row = {name: i for i, name in enumerate(ids.tolist())}
    thief = np.zeros(len(data.customers), bool)
    read_patterns = [""] * len(data.customers)
    for i, name in enumerate(data.customers):
        read_patterns[i] = patterns[row[name]]
        thief[i] = bool(patterns[row[name]])
    return Source(spec, data, thief, read_patterns)


SOURCES = (
    SourceSpec(
        "uci-tuning",
        "tuning",
        "UTC",
        15,
        dt.date(2025, 6, 2),
        90,
        (45, 80),
        (dt.date(2006, 12, 17), TUNING_END),
        composite=False,
        customers=400,
        seed=11,
    ),
    SourceSpec(
        "citylearn-tuning",
        "tuning",
        "America/Los_Angeles",
        60,
        dt.date(2025, 9, 1),
        120,
        (45, 90),
        (dt.date(2016, 8, 1), dt.date(2017, 7, 30)),
        composite=False,
        customers=400,
        seed=51,
        trace="citylearn",
    ),
    SourceSpec(
        "uci-windows",
        "evaluation",
        "Europe/Paris",
        15,
        dt.date(2025, 3, 3),
        120,
        (45, 90),
        (TUNING_END + dt.timedelta(1), dt.date(2010, 11, 25)),
        composite=False,
        seed=21,
    ),
    SourceSpec(
        "uci-composite",
        "evaluation",
        "America/New_York",
        30,
        dt.date(2024, 12, 2),
        100,
        (40, 90),
        (TUNING_END + dt.timedelta(1), dt.date(2010, 11, 25)),
        composite=True,
        seed=31,
        months=(12, 1, 2, 3),
    ),
    SourceSpec(
        "simbench-households",
        "evaluation",
        "Australia/Sydney",
        15,
        dt.date(2025, 8, 4),
        120,
        (45, 90),
        (dt.date(2016, 1, 1), dt.date(2016, 12, 31)),
        composite=False,
        seed=41,
        trace="simbench",
    ),
)
