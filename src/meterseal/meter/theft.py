"""Labelled electricity theft for simulated meters: Jokar et al. (2016) and phasor tampering.

A `TheftPlan` picks a share of meters, gives each a pattern and an onset day, and labels it.
The alteration is a pure function of (plan seed, meter index, day), so the same theft comes
out of the vectorised fast path (`alter_days`, whole arrays of days) and of the per-reading
`AlterationHook` that the simulator applies before sealing (the sender is unchanged).

The six patterns of Jokar, Arianpoo and Leung, "Electricity theft detection in AMI using
customers' consumption patterns" (IEEE Trans. Smart Grid 7(1), 2016), for a day x_1..x_T:

* scaled: x_t * a, a ~ U(0.1, 0.8) drawn once per meter (a tampered register);
* zeroed: 0 inside a window of at least 4 hours (drawn once per meter: a timer), else x_t;
* random_scaled: x_t * g_t, g_t ~ U(0.1, 0.8) per reading;
* mean_random: mean(x) * g_t, g_t ~ U(0.1, 0.8) per reading;
* constant_mean: mean(x) for every reading (same energy, no shape: defeats time-of-use);
* reversed: x_{T+1-t} (same energy, day and night swapped).

Plus phasor-level tampering: one phase's current (hence its power) under-reported by a
factor k ~ U(0.1, 0.8), as a shunt across one current transformer does.

Honest meters may get legitimate changes (labelled honest): a holiday (a few days with only
the standby load) or a new appliance (1.5-3 kW for 1-3 hours each evening from a day on).

Days are the meter's own days: local days of its time zone (the fleet's `tz`), midnight to
midnight on the wall clock, 96 readings (92 or 100 on the days clocks change). `onset_day`
and the like are local day numbers (days since 1970-01-01 on the local calendar); windows
(zeroed, appliance) are wall-clock slots. A thief reverses the day its meter shows.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from meterseal.errors import ConfigurationError
from meterseal.meter.load import Fleet
from meterseal.meter.profiles import INTERVAL, PER_DAY
from meterseal.model import PhaseMeasurement, PhasorReport, Reading

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY_SECONDS = INTERVAL * PER_DAY
LOW, HIGH = 0.1, 0.8  # Jokar's range of the scaling factors
DEFAULT_TZ = "Europe/Berlin"  # the simulator fleet's zone (`meter.load.Fleet`'s default)
EPOCH = dt.date(1970, 1, 1)


def zone(tz: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone named `tz`; `ConfigurationError` for an unknown name."""
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"unknown time zone {tz!r}: name an IANA zone such as 'Europe/Berlin' or 'UTC'"
        ) from None


def local_midnight(tz: str, day: int) -> int:
    """UTC second at which local day `day` starts in `tz` (on the 15-minute grid).

    Where a clock change skips midnight, the day starts at the first instant it has.
    """
    start = dt.datetime.combine(EPOCH + dt.timedelta(days=day), dt.time(), tzinfo=zone(tz))
    return int(start.timestamp()) // INTERVAL * INTERVAL


def local_clock(tz: str, timestamps: I64) -> tuple[I64, I64]:
    """Local day number and second of the local day (wall clock) of UTC instants."""
    import pandas as pd

    zone(tz)  # one clear error for an unknown zone
    utc = pd.DatetimeIndex(np.asarray(timestamps, np.int64).astype("datetime64[s]"), tz="UTC")
    local = np.asarray(utc.tz_convert(tz).tz_localize(None).as_unit("s").asi8, np.int64)
    day, second = np.divmod(local, DAY_SECONDS)
    return day, second


@dataclass(frozen=True)
class LocalDays:
    """Whole local days as one run of 15-minute intervals: where each day starts in the run,
    and the wall-clock slot (0..95) of each interval (a slot repeats or is skipped on the
    days clocks change)."""

    first_day: int  # local day number of the first day
    start: int  # UTC second of the run's first interval
    bounds: I64  # (days + 1,) index in the run of each day's first interval; last: the length
    clock: I64  # (intervals,) wall-clock slot of each interval

    @classmethod
    def of(cls, tz: str, first_day: int, days: int) -> LocalDays:
        """Local days [first_day, first_day + days) of zone `tz`."""
        midnights = np.array([local_midnight(tz, first_day + d) for d in range(days + 1)])
        bounds = (midnights - midnights[0]) // INTERVAL
        stamps = midnights[0] + INTERVAL * np.arange(int(bounds[-1]), dtype=np.int64)
        _, second = local_clock(tz, stamps)
        return cls(first_day, int(midnights[0]), bounds, second // INTERVAL)

    @classmethod
    def uniform(cls, first_day: int, days: int, slots: int = PER_DAY) -> LocalDays:
        """Days of `slots` readings each, as in UTC (or in data already cut into days)."""
        bounds = np.arange(days + 1, dtype=np.int64) * slots
        clock = np.tile(np.arange(slots, dtype=np.int64), days)
        return cls(first_day, first_day * DAY_SECONDS, bounds, clock)

    @property
    def days(self) -> int:
        """Days in the run."""
        return len(self.bounds) - 1

    @property
    def intervals(self) -> int:
        """Intervals in the run."""
        return int(self.bounds[-1])

    def day_index(self) -> I64:
        """The day (0-based, in the run) of each interval."""
        return np.repeat(np.arange(self.days, dtype=np.int64), np.diff(self.bounds))


class Pattern(enum.StrEnum):
    """How a thief's readings are altered (the six of Jokar et al. 2016, then phasor-level)."""

    SCALED = "scaled"
    ZEROED = "zeroed"
    RANDOM_SCALED = "random_scaled"
    MEAN_RANDOM = "mean_random"
    CONSTANT_MEAN = "constant_mean"
    REVERSED = "reversed"
    PHASE_CURRENT = "phase_current"


class Change(enum.StrEnum):
    """A legitimate change of an honest customer's consumption."""

    HOLIDAY = "holiday"
    NEW_APPLIANCE = "new_appliance"


THEFT_PATTERNS = tuple(Pattern)


@dataclass(frozen=True)
class Alteration:
    """What is done to one meter's readings from `onset_day` on (a theft, or an honest change)."""

    meter_index: int
    kind: Pattern | Change
    onset_day: int  # local day number of the first altered day
    end_day: int | None = None  # first day back to normal (holidays); None: to the end
    factor: float = 1.0  # a (scaled) or k (phase_current)
    window: tuple[int, int] = (0, 0)  # zeroed slots [start, end); appliance slots likewise
    phase: int = 0  # tampered phase (phase_current)
    power_w: float = 0.0  # new appliance's power
    seed: int = 0

    @property
    def theft(self) -> bool:
        """True for a theft pattern, False for a legitimate change."""
        return isinstance(self.kind, Pattern)

    def active(self, day: int) -> bool:
        """Whether local day `day` is altered."""
        return day >= self.onset_day and (self.end_day is None or day < self.end_day)


def _day_rng(alteration: Alteration, day: int) -> np.random.Generator:
    """The per-reading draws of one altered day: a hash of (seed, meter, day), order-free."""
    return np.random.default_rng((alteration.seed, alteration.meter_index, day))


def _alter_day(
    alt: Alteration, day: int, energy: F64, power: F64 | None, clock: I64 | None = None
) -> tuple[F64, F64 | None, I64]:
    """One day's energy (Wh, shape (S,)) and per-phase power (W, (S, P)) altered.

    `clock` is each reading's wall-clock slot (default: 0..S-1): windows are wall-clock
    times. Returns the altered energy, the altered phase powers and, for each slot, the
    slot whose phasor it carries (the reversed day carries its mirror's).
    """
    slots = len(energy)
    source = np.arange(slots)
    clock = source if clock is None else clock
    out = energy.astype(np.float64)
    kind = alt.kind
    inside = (clock >= alt.window[0]) & (clock < alt.window[1])
    if kind is Pattern.SCALED:
        out = out * alt.factor
    elif kind is Pattern.ZEROED:
        out[inside] = 0.0
    elif kind in (Pattern.RANDOM_SCALED, Pattern.MEAN_RANDOM):
        gamma = _day_rng(alt, day).uniform(LOW, HIGH, slots)
        out = gamma * (out if kind is Pattern.RANDOM_SCALED else np.full(slots, out.mean()))
    elif kind is Pattern.CONSTANT_MEAN:
        out = np.full(slots, out.mean())
    elif kind is Pattern.REVERSED:
        source = source[::-1].copy()
        out = out[source]
    elif kind is Change.HOLIDAY:
        out = np.minimum(out, np.quantile(out, 0.25))  # only the standby load stays
    elif kind is Change.NEW_APPLIANCE:
        on = _day_rng(alt, day).random() < 0.85  # not every single day
        out[inside] += alt.power_w / 4.0 * on
    if kind is Pattern.PHASE_CURRENT:
        return _phase_current(alt, energy, power)
    out = np.rint(out)
    if power is None:
        return out, None, source
    return out, _rescaled(power[source], energy[source], out), source


def _rescaled(power: F64, before: F64, after: F64) -> F64:
    """Phase powers scaled so that each slot's total matches the altered energy."""
    total = before * 4.0
    scale = np.divide(after * 4.0, total, out=np.zeros_like(total), where=total > 0)
    scaled = power * scale[:, None]
    empty = (total <= 0) & (after > 0)  # energy where there was none: spread over the phases
    scaled[empty] = (after[empty] * 4.0 / power.shape[1])[:, None]
    return scaled


def _phase_current(alt: Alteration, energy: F64, power: F64 | None) -> tuple[F64, F64, I64]:
    """One phase's current under-reported: its power, and so the energy, falls by (1 - k)."""
    slots = len(energy)
    if power is None:  # no phasor: a single-phase meter
        power = (energy * 4.0)[:, None]
    phase = min(alt.phase, power.shape[1] - 1)
    altered = power.copy()
    altered[:, phase] *= alt.factor
    return np.rint(altered.sum(1) / 4.0), altered, np.arange(slots)


def alter_run(
    alt: Alteration,
    days: LocalDays,
    energy_wh: I64 | F64,
    phase_power: F64 | None = None,
) -> tuple[F64, F64 | None]:
    """Alter a run of whole local days: energy (T,) in Wh, optional phase power (T, P) in W."""
    energy = np.asarray(energy_wh, np.float64)
    out = energy.copy()
    power = None if phase_power is None else np.array(phase_power, np.float64)
    for d in range(days.days):
        day = days.first_day + d
        if not alt.active(day):
            continue
        cut = slice(int(days.bounds[d]), int(days.bounds[d + 1]))
        day_power = None if phase_power is None else phase_power[cut]
        out[cut], altered, _ = _alter_day(alt, day, energy[cut], day_power, days.clock[cut])
        if power is not None and altered is not None:
            power[cut] = altered
    return out, power


def alter_days(
    alt: Alteration,
    first_day: int,
    energy_wh: I64 | F64,
    phase_power: F64 | None = None,
) -> tuple[I64, F64 | None]:
    """Alter whole days of equal length: energy (D, S) in Wh, optional power (D, S, P) in W."""
    energy = np.asarray(energy_wh, np.float64)
    d, s = energy.shape
    power = None if phase_power is None else np.asarray(phase_power).reshape(d * s, -1)
    out, altered = alter_run(alt, LocalDays.uniform(first_day, d, s), energy.ravel(), power)
    shaped = None if altered is None else altered.reshape(d, s, -1)
    return out.reshape(d, s).astype(np.int64), shaped


@dataclass(frozen=True)
class TheftPlan:
    """Which meters steal, how and from when; optional legitimate changes of honest meters."""

    share: float = 0.1
    patterns: tuple[Pattern, ...] = THEFT_PATTERNS
    holiday_share: float = 0.0
    appliance_share: float = 0.0
    seed: int = 1
    min_before: int = 5  # honest days before a theft's onset, inside the window
    min_after: int = 5  # altered days at least, inside the window
    holiday_days: tuple[int, int] = (4, 9)  # uniform range of a holiday's length

    def __post_init__(self) -> None:
        shares = (self.share, self.holiday_share, self.appliance_share)
        if min(shares) < 0 or sum(shares) > 1 or not self.patterns:
            raise ConfigurationError("theft and change shares must be >= 0 and sum to <= 1")

    def assign(
        self,
        meter_indices: Sequence[int],
        first_day: int,
        days: int,
        phases: Callable[[int], int] = lambda _i: 1,
    ) -> dict[int, Alteration]:
        """The alteration of each chosen meter (thieves balanced over the patterns)."""
        if days < self.min_before + self.min_after:
            raise ConfigurationError(
                f"a window of {days} days is too short for onsets after {self.min_before} "
                f"honest days with {self.min_after} altered days"
            )
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(np.asarray(meter_indices, np.int64))
        n = len(order)
        thieves = round(self.share * n)
        holidays = round(self.holiday_share * n)
        appliances = round(self.appliance_share * n)
        out: dict[int, Alteration] = {}
        for j, index in enumerate(order[:thieves].tolist()):
            pattern = self.patterns[j % len(self.patterns)]
            out[index] = self._theft(index, pattern, first_day, days, phases(index))
        rest = order[thieves : thieves + holidays + appliances].tolist()
        for j, index in enumerate(rest):
            out[index] = self._change(index, j < holidays, first_day, days)
        return out

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, index, 0xA17E))

    def _theft(
        self, index: int, pattern: Pattern, first_day: int, days: int, phases: int
    ) -> Alteration:
        rng = self._rng(index)
        onset = first_day + int(rng.integers(self.min_before, days - self.min_after + 1))
        start = int(rng.integers(0, PER_DAY - 16 + 1))  # zeroed: at least 4 h
        length = int(rng.integers(16, PER_DAY - start + 1))
        return Alteration(
            index,
            pattern,
            onset,
            factor=float(rng.uniform(LOW, HIGH)),
            window=(start, start + length),
            phase=int(rng.integers(0, max(phases, 1))),
            seed=self.seed,
        )

    def _change(self, index: int, holiday: bool, first_day: int, days: int) -> Alteration:
        rng = self._rng(index)
        if holiday:
            length = int(rng.integers(self.holiday_days[0], self.holiday_days[1] + 1))
            onset = first_day + int(rng.integers(0, max(days - length, 0) + 1))
            return Alteration(index, Change.HOLIDAY, onset, onset + length, seed=self.seed)
        onset = first_day + int(rng.integers(1, days))
        start = int(rng.integers(17 * 4, 23 * 4))  # evening: 17:00-23:00
        length = int(rng.integers(4, 13))
        window = (start, min(start + length, PER_DAY))
        power = float(rng.uniform(1500, 3000))
        return Alteration(
            index, Change.NEW_APPLIANCE, onset, window=window, power_w=power, seed=self.seed
        )


def phase_powers(report: PhasorReport) -> F64:
    """The active power of each phase of a report (W)."""
    return np.array([p.active_power for p in report.phases], np.float64)


def _scaled_report(report: PhasorReport, power: F64) -> PhasorReport:
    """A report carrying these phase powers: current and reactive power follow each phase's."""
    phases = []
    for measured, watts in zip(report.phases, power.tolist(), strict=True):
        if measured.active_power > 0:
            k = watts / measured.active_power
            phases.append(
                PhaseMeasurement(
                    measured.voltage,
                    measured.current * k,
                    measured.angle,
                    float(watts),
                    measured.reactive_power * k,
                )
            )
        else:  # energy where the honest phase drew none: at the report's power factor
            pf = min(max(abs(report.power_factor), 1e-3), 1.0)
            angle = float(np.degrees(np.arccos(pf)))
            phases.append(
                PhaseMeasurement(
                    measured.voltage,
                    watts / (measured.voltage * pf),
                    angle,
                    float(watts),
                    watts * float(np.tan(np.radians(angle))),
                )
            )
    old = float(sum(p.active_power for p in report.phases))
    total = float(power.sum())
    demand = report.demand * total / old if old > 0 else total
    return replace(report, phases=tuple(phases), demand=demand)


@dataclass(frozen=True)
class _Day:
    start: int  # UTC second of the local day's first reading
    honest: F64  # the honest day's energy (Wh)
    energy: F64  # the altered day's energy (Wh)
    reports: list[PhasorReport | None]  # the honest day's phasor reports
    power: F64 | None  # the altered phase powers (W)
    source: I64  # which honest slot's phasor each altered slot carries


@dataclass
class AlterationHook:
    """A `FraudHook` for the simulator: one meter's readings altered before they are sealed.

    The load model is deterministic, so the hook regenerates the meter's honest day (a local
    day of the fleet's zone) to alter whole-day patterns (means, reversal) one reading at a
    time, in any order.
    """

    fleet: Fleet
    alteration: Alteration
    _days: dict[tuple[int, bool], _Day] = field(default_factory=dict, repr=False)

    def _day(self, meter_id: str, day: int, with_phasor: bool) -> _Day:
        key = (day, with_phasor)
        if key not in self._days:
            days = LocalDays.of(self.fleet.tz, day, 1)
            honest = list(
                self.fleet.readings(
                    meter_id,
                    self.alteration.meter_index,
                    days.start,
                    days.intervals,
                    with_phasor=with_phasor,
                )
            )
            energy = np.array([r.energy_wh for r in honest], np.float64)
            reports = [r.phasor for r in honest]
            power = np.stack([phase_powers(r) for r in reports if r]) if with_phasor else None
            altered, altered_power, source = _alter_day(
                self.alteration, day, energy, power, days.clock
            )
            self._days = {key: _Day(days.start, energy, altered, reports, altered_power, source)}
        return self._days[key]

    def __call__(self, reading: Reading) -> Reading:
        """The reading as the altered meter sends it."""
        moment = dt.datetime.fromtimestamp(reading.timestamp, zone(self.fleet.tz))
        day = (moment.date() - EPOCH).days
        if not self.alteration.active(day):
            return reading
        altered = self._day(reading.meter_id, day, reading.phasor is not None)
        slot = (reading.timestamp - altered.start) // INTERVAL
        if int(altered.honest[slot]) != reading.energy_wh:
            raise ConfigurationError(
                f"reading {reading.meter_id}:{reading.counter} is not meter "
                f"{self.alteration.meter_index} of this fleet: the hook cannot alter it"
            )
        phasor = reading.phasor
        if altered.power is not None:
            report = altered.reports[int(altered.source[slot])]
            assert report is not None
            phasor = _scaled_report(report, altered.power[slot])
        return replace(reading, energy_wh=int(altered.energy[slot]), phasor=phasor)
