"""Features that catch what a correlation misses, one number per customer each.

Built from per-day series (`Daily`): each change feature is the t statistic of the largest
lasting step (`changepoint`) in one series, in the direction theft moves it; what every
neighbour did that day (customers of the same region, or all) is taken out first, so a
weekend, a public holiday or a cold snap is not a step:

* scale_drop: the day's mean log reading falls while the spread of the logs holds: every
  reading fell by one factor (a tampered register), not just the peaks (an absence keeps
  the standby load and narrows the spread, `SPREAD_SCALE`);
* level_drop: daily energy falls;
* base_drop: the standby load (10th percentile of the day) falls; a holiday leaves it,
  a tampered register scales it with everything else;
* zero_rise: runs of zero readings appear (a zeroed window);
* flattening: the day's variation (coefficient of variation) collapses, by far more than a
  standby-only day's (`FLAT_MARGIN`): constant days;
* roughening: consecutive readings stop following each other (random per-reading factors);
* pattern_break: the correlation with the regular behaviour (the seed's SOM method) moves;
* own_reversal: days come to match the customer's own earlier days reversed in time better
  than as they were (`reversal`);
* reversal: the same against the population's usual shape;
* profile_reversal: the customer's hour-of-day profile after a split day is its profile
  before it reversed in time, in both halves of the days after it (`reversal.profile_mirror`);
* atypical_shape: days stop resembling the population's usual shape;
* load_centre: the hour the day's energy centres on (its centre of mass in time) moves;
* phase_share_drop: one phase's share of the current falls (phasor tampering);
* current_drop: the current falls while the voltage holds and the neighbourhood does not;
* phasor_mismatch: days whose energy disagrees with their phasor reports' active power;
* som_break: the seed's own score, the mean of (1 - correlation) over the window;
* drift: the standby load *and* the day's busiest hour lose a growing share from an onset
  day on (`drift.ramp`: a register that drifts scales every reading), measured against
  the customer's own week-to-week wander; the smaller of the two ramps' t counts (a
  season that takes the heating or the lighting away lowers one of them, not both);
  base_drift: the standby load's ramp alone (a drift the busiest hour hides, weaker);
* bypass: a block of 3 to 8 hours of the customer's own hour-of-day profile loses most
  of its energy from a split day on while the day's other hours hold (`bypass`: a
  partial-day bypass);
* level_shift: the levels the customer's readings pile up at (its appliances' powers) all
  fall by one factor from a split day on, in both halves of the days after it
  (`level_shift`: a scaled or drifting register moves every pile, a season or a habit
  only changes their sizes);
* level_drift: those levels fall week by week along a line from a split day on, the piles
  still matching once shifted (`level_drift`: a drifting register's growing factor).

The level features (scale_drop, level_drop, base_drop) lose the t of any lasting rise
within the days after their onset (`rebound`): a theft stays, a household back from a
holiday rises again. Each customer is judged on its own span of days (`changepoint`).

The shape features are weighed by how well the change kept the day's energy (`kept`): a new
appliance adds energy and an absence removes it, while the thefts that only a shape can
reveal (constant or reversed days) keep it; the level features judge removals.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.fraud import bypass, changepoint, drift
from meterseal.fraud.daily import F32, Daily, wide

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
MISMATCH = 0.03  # a day whose energy and phasor energy differ by more than 3 %
LEVEL_MARGIN = 0.1  # log units: drops of energy smaller than about 10 % are not evidence
FLAT_MARGIN = 1.5  # log units: a day up to 4.5 times flatter (standby only) is no evidence
LEVEL_HALF = 2  # level changes: each half of the days after them has 5 days (a week's
# holiday at the end of the window is not a lasting drop yet)
REBOUND_WEIGHT = 0.5  # t of a rise after the onset taken off a drop's t
# Level features: a rise after their onset (a household back from holiday) weakens them.
LEVEL = ("scale_drop", "level_drop", "base_drop")
ZERO_EVIDENCE = 5.0  # t of zero_rise beyond which a fallen standby load is not a drift
DRIFT_MARGIN = 0.2  # log units: a drift losing less than about 15 % by the end is no evidence
KEPT_SCALE = 0.4  # log units: a shape change that moved daily energy by 20 % no longer counts


@dataclass(frozen=True)
class Feature:
    """A feature's name, the theft pattern it points to and what it measures."""

    name: str
    pattern: str
    meaning: str


FEATURES = (
    Feature("scale_drop", "scaled readings", "every reading fell by the same factor"),
    Feature("level_drop", "scaled readings", "daily energy fell and stayed low"),
    Feature("base_drop", "scaled readings", "the standby load fell with it"),
    Feature("zero_rise", "zeroed window", "windows of zero readings appeared"),
    Feature("flattening", "constant readings", "the daily curve went flat"),
    Feature("roughening", "random scaling", "readings stopped following each other"),
    Feature("pattern_break", "changed shape", "days stopped matching the regular behaviour"),
    Feature("own_reversal", "reversed day", "days match its earlier days reversed in time"),
    Feature("reversal", "reversed day", "days match the usual shape reversed in time"),
    Feature(
        "profile_reversal", "reversed day", "its hourly profile became its earlier one reversed"
    ),
    Feature("atypical_shape", "changed shape", "days stopped looking like anyone's days"),
    Feature("load_centre", "reversed day", "the hour the day's energy centres on moved"),
    Feature("phase_share_drop", "phase current", "one phase's share of the current fell"),
    Feature("current_drop", "phase current", "current fell while voltage held"),
    Feature("phasor_mismatch", "tampered register", "energy disagrees with the phasor reports"),
    Feature("som_break", "changed shape", "mean (1 - correlation) with the regular behaviour"),
    Feature("drift", "gradual drift", "standby load and peak hour drifted down from a day on"),
    Feature("base_drift", "gradual drift", "the standby load drifted down from a day on"),
    Feature("bypass", "partial-day bypass", "a window of hours lost its energy, the rest kept"),
    Feature("level_shift", "scaled readings", "its readings' levels all fell by one factor"),
    Feature("level_drift", "gradual drift", "its readings' levels fell week by week"),
)
NAMES = tuple(f.name for f in FEATURES)
# Features of the day's shape: they count only changes that kept the day's energy (`kept`).
SHAPE = (
    "flattening",
    "pattern_break",
    "own_reversal",
    "reversal",
    "atypical_shape",
    "load_centre",
)
MIN_PEERS = 10  # customers with a value on a day for their median to be what everyone did
SPREAD_SCALE = 0.3  # log units: a level drop whose log spread moved this much is no scaling


def common(y: F64, regions: Sequence[str] | None) -> F64:
    """Each day's median over the customers of the region (all without regions), (C, D).

    What every neighbour did that day (a weekend, a public holiday, a cold snap) is not a
    customer's own change: the features subtract it. A day on which fewer than `MIN_PEERS`
    customers of the region have a value has no such median (0): there the median is mostly
    the customer's own day, and a customer whose data start late or stop early, alone on
    its days, would have its own change subtracted from itself.
    """
    keys = np.asarray(regions if regions is not None else [""] * len(y), dtype=object)
    out = np.zeros_like(y)
    with _quiet():
        for region in np.unique(keys):
            rows = keys == region
            peers = np.sum(~np.isnan(y[rows]), axis=0)
            median = np.nan_to_num(np.nanmedian(y[rows], axis=0))
            out[rows] = np.where(peers >= MIN_PEERS, median, 0.0)[None, :]
    return out


def neighbourhood(total: F64, regions: Sequence[str] | None) -> F64:
    """Log of the neighbourhood's relative level on each day, per customer (C, D).

    Each customer's day is divided by its own median day; the neighbourhood's level is the
    median of that over the customers of the region.
    """
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        own = np.nanmedian(total, axis=1, keepdims=True)
        relative = np.log(np.where(own > 0, total / own, np.nan))
    return common(relative, regions)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence NumPy's warnings on all-NaN rows: customers without data are expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _log(x: F64, customer_scale: F64, share: float) -> F64:
    """log(x + share * customer's typical x): zeros stay finite, small values stay visible."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(x + share * np.maximum(customer_scale, 1e-9)[:, None])


@dataclass(frozen=True)
class FeatureTable:
    """Feature values (customers, features) and the onset day each change feature found."""

    customers: tuple[str, ...]
    values: F64
    onset: I64  # (C, F): first day after the step, -1 when the feature has none

    def column(self, name: str) -> F64:
        """One feature for every customer."""
        return self.values[:, NAMES.index(name)]


@dataclass(frozen=True)
class Series:
    """The daily series a change feature tests, its noise floor and the direction of theft."""

    y: F64  # (customers, days), NaN on missing days
    floor: float
    drop: bool  # True: theft lowers it; False: a change either way counts
    margin: float = 0.0  # a change this small is not evidence yet
    min_half: int = 2  # present days each half of the days after the change must have

    def step(self) -> changepoint.Step:
        """The largest lasting change in the direction theft moves the series."""
        if self.drop:
            return changepoint.drop(
                self.y, floor=self.floor, margin=self.margin, min_half=self.min_half
            )
        return changepoint.either(self.y, floor=self.floor, margin=self.margin)


def series(d: Daily, regions: Sequence[str] | None) -> dict[str, Series]:
    """The series behind the single-series change features (what every neighbour did on a
    day is removed from each customer's day)."""
    total = wide(d.total)
    with _quiet():
        typical = np.nan_to_num(np.nanmedian(total, axis=1))
        typical_base = np.nan_to_num(np.nanmedian(wide(d.base), axis=1))
    level = neighbourhood(total, regions)

    def own(y: F64) -> F64:
        return y - common(y, regions)

    with _quiet():
        log_level = wide(d.log_level)
        log_level -= np.nanmedian(log_level, axis=1, keepdims=True)

    base_scale = np.maximum(typical_base, typical / 200)
    return {
        "scale_drop": Series(own(log_level), 0.05, True, LEVEL_MARGIN, LEVEL_HALF),
        "level_drop": Series(
            _log(total, typical, 0.02) - level, 0.05, True, LEVEL_MARGIN, LEVEL_HALF
        ),
        "base_drop": Series(
            _log(wide(d.base), base_scale, 0.05) - level, 0.05, True, LEVEL_MARGIN, LEVEL_HALF
        ),
        "zero_rise": Series(-wide(d.zero_run), 0.02, True),
        "flattening": Series(own(np.log(wide(d.cv) + 0.02)), 0.05, True, FLAT_MARGIN),
        "roughening": Series(own(wide(d.lag1)), 0.03, True),
        "pattern_break": Series(own(wide(d.corr)), 0.05, False),
        "reversal": Series(own(wide(d.corr_reversed) - wide(d.corr_typical)), 0.05, False),
        "atypical_shape": Series(own(wide(d.corr_typical)), 0.05, True),
        "load_centre": Series(own(_centre(d.hours)), 0.25, False),
    }


def features(customers: tuple[str, ...], d: Daily, regions: Sequence[str] | None) -> FeatureTable:
    """Every feature of every customer from its per-day series."""
    tests = series(d, regions)
    steps = {name: s.step() for name, s in tests.items()}
    level = tests["level_drop"].y
    steps["own_reversal"] = changepoint.Step(
        d.reversal_t, d.reversal_onset, np.zeros(len(d.reversal_t))
    )
    steps["level_shift"] = changepoint.Step(
        d.level_shift_t, d.level_shift_onset, np.zeros(len(d.level_shift_t))
    )
    steps["level_drift"] = changepoint.Step(
        d.level_drift_t, d.level_drift_onset, np.zeros(len(d.level_drift_t))
    )
    steps["profile_reversal"] = changepoint.Step(
        d.profile_reversal_t, d.profile_reversal_onset, np.zeros(len(d.profile_reversal_t))
    )
    for name in SHAPE:
        step = steps[name]
        steps[name] = changepoint.Step(step.t * kept(level, step.onset), step.onset, step.delta)
    scale = steps["scale_drop"]
    spread = wide(d.log_spread)
    spread -= common(spread, regions)
    scale_kept = kept(spread, scale.onset, SPREAD_SCALE)
    steps["scale_drop"] = changepoint.Step(scale.t * scale_kept, scale.onset, scale.delta)
    ramp = drift.ramp(tests["base_drop"].y, floor=0.05, margin=DRIFT_MARGIN)
    peak = drift.ramp(_peak(d.hours, wide(d.total)), floor=0.05, margin=DRIFT_MARGIN)
    # A drifting register scales readings, it does not zero them: where runs of zeros
    # appeared, they (a zeroed window) explain the fallen standby load.
    grows = steps["zero_rise"].t < ZERO_EVIDENCE
    both = np.minimum(ramp.t, peak.t)  # every reading scaled: base and peak ramp alike
    steps["drift"] = changepoint.Step(np.where(grows, both, 0.0), ramp.onset, ramp.delta)
    steps["base_drift"] = changepoint.Step(np.where(grows, ramp.t, 0.0), ramp.onset, ramp.delta)
    window = bypass.profile_drop(wide(d.hours), np.isnan(wide(d.total)))
    # A window read as zero is a zeroed window (its own detector names it), whatever else.
    steps["bypass"] = changepoint.Step(np.where(grows, window.t, 0.0), window.onset, window.delta)
    for name in LEVEL:
        step = steps[name]
        back = rebound(tests[name].y if name in tests else level, step.onset, 0.05)
        steps[name] = changepoint.Step(
            np.where(step.t > 0, step.t - REBOUND_WEIGHT * back, step.t), step.onset, step.delta
        )
    steps["phase_share_drop"] = _phase_share(wide(d.current))
    steps["current_drop"] = _current_drop(d, neighbourhood(wide(d.total), regions))
    values = np.zeros((len(customers), len(FEATURES)))
    onset = np.full((len(customers), len(FEATURES)), -1, np.int64)
    for name, step in steps.items():
        j = NAMES.index(name)
        values[:, j] = step.t
        onset[:, j] = step.onset
    values[:, NAMES.index("phasor_mismatch")] = _mismatch(d)
    with _quiet():
        values[:, NAMES.index("som_break")] = np.nan_to_num(np.nanmean(1.0 - wide(d.corr), axis=1))
    return FeatureTable(customers, values, onset)


def rebound(y: F64, onset: I64, floor: float) -> F64:
    """The largest lasting rise within the days after each customer's onset (t, >= 0).

    A theft stays: after a tampered register's step the days go on as before at the lower
    level. A household that was away comes back: a deep dip, then a rise. The rise found
    after the onset is what the change's evidence loses (`REBOUND_WEIGHT`).
    """
    days = y.shape[1]
    shift = np.where(onset > 0, onset, days)
    idx = np.arange(days)[None, :] + shift[:, None]
    after = np.where(idx < days, np.take_along_axis(y, np.minimum(idx, days - 1), 1), np.nan)
    rise = changepoint.drop(-after, floor=floor, min_side=3)
    out: F64 = np.maximum(rise.t, 0.0)
    return out


def kept(level: F64, onset: I64, scale: float = KEPT_SCALE) -> F64:
    """How well a change at `onset` kept a daily quantity, per customer: 1 when its mean
    (say, the log of the day's energy relative to the neighbourhood) is the same after as
    before up to twice its standard error, falling to 0 when it moved `scale` further,
    either way, in both halves of the days after the onset (a holiday late in the window
    does not hide a change before it). The thefts only a shape reveals (constant or
    reversed days) keep the energy; a new appliance adds some, an absence removes some (and
    the level features judge removals)."""
    days = level.shape[1]
    present = ~np.isnan(level)
    end = changepoint.own_end(present)[:, None]  # each customer's own last day
    start = np.argmax(present, axis=1)[:, None]
    k = np.where(onset[:, None] > 0, onset[:, None], (start + end) // 2)
    mid = k + (end - k + 1) // 2
    day = np.arange(days)[None, :]
    sigma = changepoint.noise(level, 0.0)
    with _quiet():
        before = np.nanmean(np.where(day < k, level, np.nan), axis=1)
        n_before = (present & (day < k)).sum(1)
        changes = []
        for lo, hi in ((k, mid), (mid, end)):
            inside = (day >= lo) & (day < hi)
            half = np.nanmean(np.where(inside, level, np.nan), axis=1)
            n = (present & inside).sum(1)
            error = sigma * np.sqrt(1.0 / np.maximum(n_before, 1) + 1.0 / np.maximum(n, 1))
            changes.append(np.maximum(np.abs(np.nan_to_num(half - before)) - 2.0 * error, 0.0))
    out: F64 = np.clip(1.0 - np.min(changes, axis=0) / scale, 0.0, 1.0)
    return out


def _peak(hours: F32, total: F64) -> F64:
    """Log of each day's busiest hour (or slot), relative to the customer's typical one;
    NaN on missing days. A drifting register lowers it with every other reading."""
    busiest = wide(hours.max(axis=2))
    with _quiet():
        typical = np.nan_to_num(np.nanmedian(np.where(np.isnan(total), np.nan, busiest), axis=1))
    y = np.where(np.isnan(total), np.nan, _log(busiest, typical, 0.05))
    with _quiet():
        y -= np.nanmedian(y, axis=1, keepdims=True)
    out: F64 = y
    return out


def _centre(hours: F32) -> F64:
    """Centre of mass in time of each day's energy, in hours (or slots) from the day's start."""
    weights = np.arange(hours.shape[2], dtype=np.float32) + 0.5
    total = wide(hours.sum(2))
    with np.errstate(invalid="ignore", divide="ignore"):
        centre: F64 = np.where(total > 0, wide((hours * weights).sum(2)) / total, np.nan)
    return centre


def _phase_share(current: F64) -> changepoint.Step:
    """The largest lasting drop of one phase's share of the current (multi-phase meters)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(current, axis=2)
        share = current / np.where(total > 0, total, np.nan)[..., None]
    phases = (~np.isnan(current)).any(1).sum(1)
    best = changepoint.Step(
        np.zeros(len(current)), np.full(len(current), -1, np.int64), np.zeros(len(current))
    )
    for k in range(current.shape[2]):
        step = changepoint.drop(share[:, :, k], floor=0.005)
        better = (step.t > best.t) & (phases >= 2)
        best = changepoint.Step(
            np.where(better, step.t, best.t),
            np.where(better, step.onset, best.onset),
            np.where(better, step.delta, best.delta),
        )
    return best


def _current_drop(d: Daily, level: F64) -> changepoint.Step:
    """A lasting drop of the current (relative to the neighbourhood) with a steady voltage."""
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        current = wide(d.current)
        amps = np.nansum(current, axis=2)
        amps = np.where(np.isnan(current).all(2), np.nan, amps)
        volts = np.nanmean(wide(d.voltage), axis=2)
        typical = np.nan_to_num(np.nanmedian(amps, axis=1))
    step = changepoint.drop(_log(amps, typical, 0.02) - level, floor=0.05, margin=LEVEL_MARGIN)
    onset = np.maximum(step.onset, 1)
    days = np.arange(amps.shape[1])[None, :]
    with _quiet():
        before = np.nanmean(np.where(days < onset[:, None], volts, np.nan), axis=1)
        after = np.nanmean(np.where(days >= onset[:, None], volts, np.nan), axis=1)
    steady = np.abs(np.nan_to_num(after / before - 1.0, nan=1.0)) < 0.01
    t = np.where(steady & (step.onset >= 0), step.t, 0.0)
    return changepoint.Step(t, np.where(t > 0, step.onset, -1), step.delta)


def _mismatch(d: Daily) -> F64:
    """Share of days whose energy and phasor energy differ by more than `MISMATCH`."""
    with np.errstate(invalid="ignore", divide="ignore"):
        total = wide(d.total)
        gap = np.abs(wide(d.phasor_kwh) - total) / np.maximum(total, 1e-6)
    known = ~np.isnan(gap)
    count = (np.nan_to_num(gap) > MISMATCH).sum(1)
    share: F64 = np.divide(count, known.sum(1), out=np.zeros(len(gap)), where=known.sum(1) > 0)
    return share
