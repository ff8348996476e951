"""Consumption model of the meter fleet: households on BDEW profiles, noise, appliances, UCI replay.

Sans-IO and deterministic: every random number is a hash (SplitMix64) of the fleet seed, the
meter index, a stream number and the absolute 15-minute interval, so any window of any meter
can be generated on its own, in any order, and always gives the same values. See
docs/load-model.md for the model and its parameters.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from meterseal.errors import ConfigurationError
from meterseal.meter import phasor
from meterseal.meter import randomness as rnd
from meterseal.meter.profiles import (
    INTERVAL,
    PER_DAY,
    UCI_ROWS,
    Window,
    first_interval,
    local_window,
    profile_shares,
    uci_sample,
)
from meterseal.meter.randomness import F64, I64, U64
from meterseal.model import PhasorReport, Reading

PROFILES = ("H25", "G25", "L25", "UCI")
DEFAULT_ANNUAL_KWH: Mapping[str, float] = {"H25": 3500.0, "G25": 15000.0, "L25": 12000.0}


# Random streams: the high bits of each hashed counter; one stream per independent quantity.
_S_PARAM, _S_DAY, _S_HOUR, _S_WHITE, _S_FREQ, _S_USES, _S_USE = range(1, 8)
_S_PHASOR = 20  # .. 49, numbered inside meterseal.meter.phasor
# Columns of the per-meter parameter draw (appliance columns follow).
_P_PROFILE, _P_ANNUAL, _P_PHASES, _P_PF, _P_THD, _P_VOLT, _P_REPLAY, _P_APPLIANCES = range(8)


@dataclass(frozen=True, slots=True)
class Appliance:
    """An appliance whose uses arrive as a Poisson process modulated by the local hour."""

    name: str
    power_w: tuple[float, float]  # uniform range of the power drawn during one use
    minutes: tuple[float, float]  # uniform range of one use's duration
    per_day: float  # mean uses a day for an owning household
    ownership: float  # share of households owning one
    hourly: tuple[float, ...]  # 24 relative start weights by local hour
    extra: bool = False  # True: adds to the annual consumption (EV) instead of being part of it


APPLIANCES = (
    Appliance("kettle", (1800, 3000), (2, 5), 2.0, 0.9,
              (.1, .05, .05, .05, .1, .4, 1.5, 2.5, 2, 1.2, 1, 1,
               1.3, 1, 1, 1.2, 1.3, 1.2, 1.4, 1.3, 1.1, .9, .5, .2)),
    Appliance("washing_machine", (1800, 2200), (15, 35), 0.5, 0.95,
              (0, 0, 0, 0, 0, .1, .3, .8, 1.5, 2, 2, 1.8,
               1.5, 1.3, 1.3, 1.3, 1.4, 1.5, 1.5, 1.3, 1, .6, .2, .05)),
    Appliance("oven", (1500, 2500), (20, 60), 0.35, 0.9,
              (0, 0, 0, 0, 0, 0, .1, .2, .3, .4, .8, 2,
               2.5, 1, .3, .3, .8, 2.5, 3.5, 2.5, .8, .2, .05, 0)),
    Appliance("ev", (3700, 7400), (45, 240), 0.35, 0.0,
              (.3, .1, .05, .05, .05, .05, .1, .2, .3, .3, .3, .4,
               .5, .5, .6, .9, 1.5, 2.5, 3, 2.5, 1.8, 1.2, .8, .5), extra=True),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Household:
    """One meter's drawn parameters (what stays fixed over time)."""

    meter_index: int
    profile: str
    annual_kwh: float  # drawn yearly consumption without EV charging; 0 for replay meters
    appliances: tuple[str, ...]
    phases: int
    power_factor: float
    thd: float
    replay_offset_days: int


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per-window constants of the noise and appliance placement (shared by all meters)."""

    hours: I64  # local hour indices carrying a knot
    days: I64  # local day indices covering `hours`
    day_of_knot: I64  # position in `days` of each knot's day
    k0: I64  # knot on the left of each interval
    a: F64  # interpolation weight of the right knot
    correction: F64  # half the variance of the log-noise: exp(noise - correction) has mean 1
    low: int  # first local slot of the window widened by the appliance look-back
    high: int  # last local slot of that widened window
    lut: I64  # local slot - low -> position in the widened window


@functools.lru_cache(maxsize=16)
def _layout(
    first: int, count: int, tz: str, noise: tuple[float, float, float], lookback: int
) -> _Layout:
    local = local_window(first, count, tz).local
    sd_day, sd_hour, sd_white = noise
    hours = np.arange(local.min() // 4, local.max() // 4 + 2, dtype=np.int64)
    days = np.arange(hours[0] // 24, hours[-1] // 24 + 1, dtype=np.int64)
    pos = local / 4.0 - hours[0]
    k0 = pos.astype(np.int64)
    a = pos - k0
    spread = (1 - a) ** 2 + a**2  # variance of an interpolated pair of independent knots
    same_day = (hours[k0] // 24) == (hours[k0 + 1] // 24)
    var = sd_day**2 * np.where(same_day, 1.0, spread) + sd_hour**2 * spread + sd_white**2
    wide = local_window(first - lookback, count + lookback, tz).local
    low, high = int(wide[0]), int(wide.max())
    lut = np.full(high - low + 1, -1, np.int64)
    lut[wide - low] = np.arange(count + lookback)
    lut = np.maximum.accumulate(lut)  # slots skipped by a DST change go to the next one
    return _Layout(hours, days, hours // 24 - days[0], k0, a, var / 2, low, high, lut)


# ---------------------------------------------------------------- the fleet
@dataclass(frozen=True, slots=True)
class _Params:
    keys: U64
    profile: I64  # index into PROFILES
    annual_kwh: F64  # drawn total (EV charging comes on top)
    base_kwh: F64  # the part carried by the BDEW profile: total minus expected appliance use
    owns: npt.NDArray[np.bool_]  # (M, A)
    rate: F64  # (M, A) mean uses a day
    phases: I64
    pf: F64
    thd: F64
    volt: F64
    replay_offset: I64


class Fleet:
    """A seeded population of meters; any meter's consumption for any window, on demand."""

    def __init__(
        self,
        seed: int,
        *,
        mix: Mapping[str, float] | None = None,
        tz: str = "Europe/Berlin",
        annual_kwh: Mapping[str, float] = DEFAULT_ANNUAL_KWH,
        annual_sigma: float = 0.4,
        appliances: Sequence[Appliance] = APPLIANCES,
        ev_share: float = 0.0,
        three_phase_share: float = 0.0,
        noise: tuple[float, float, float] = (0.15, 0.25, 0.15),
    ) -> None:
        mix = dict(mix or {"H25": 1.0})
        if set(mix) - set(PROFILES) or min(mix.values()) < 0 or sum(mix.values()) <= 0:
            raise ConfigurationError(f"mix must weigh profiles among {PROFILES}, got {mix}")
        weights = np.array([mix.get(p, 0.0) for p in PROFILES], np.float64)
        self._cum = np.cumsum(weights / weights.sum())
        self.seed = seed
        self.tz = tz
        self._annual = np.array([annual_kwh.get(p, 0.0) for p in PROFILES], np.float64)
        self._sigma = annual_sigma
        self.appliances = tuple(
            replace(a, ownership=ev_share) if a.name == "ev" else a for a in appliances
        )
        self._three_phase = three_phase_share
        self._noise = noise
        apps = self.appliances
        self._power = np.array([a.power_w for a in apps], np.float64).reshape(-1, 2)
        self._minutes = np.array([a.minutes for a in apps], np.float64).reshape(-1, 2)
        self._power[:, 1] -= self._power[:, 0]  # (low, span) of the uniform draws
        self._minutes[:, 1] -= self._minutes[:, 0]
        self._per_day = np.array([a.per_day for a in apps], np.float64)
        self._ownership = np.array([a.ownership for a in apps], np.float64)
        self._inside = np.array([not a.extra for a in apps], bool)  # part of `annual`
        use_kwh = (self._power @ [1, 0.5]) * (self._minutes @ [1, 0.5]) / 60_000
        self._yearly_kwh = use_kwh * self._per_day * 365 * self._inside
        self._span = np.ceil(self._minutes.sum(1) / 15).astype(np.int64) + 1  # intervals touched
        self._lookback = int(self._span.max(initial=0))
        # Start-slot CDF of each appliance, shifted by its index so one searchsorted serves all.
        cdf = np.cumsum(np.repeat(np.array([a.hourly for a in apps]).reshape(-1, 24), 4, 1), 1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        self._cdf = (cdf + np.arange(len(apps))[:, None]).ravel()
        self._fleet_key = rnd.mix(np.array([seed & (2**64 - 1)], np.uint64))

    def _params(self, indices: I64) -> _Params:
        keys = rnd.mix(self._fleet_key ^ indices.astype(np.uint64))
        n_app = len(self.appliances)
        bits = rnd.bits(keys, _S_PARAM, 0, _P_APPLIANCES + 2 * n_app)
        u, z = rnd.uniform(bits), rnd.normal(bits)  # each column is used as one or the other
        profile = np.minimum(np.searchsorted(self._cum, u[:, _P_PROFILE], side="right"), 3)
        mean, sd = self._annual[profile], self._sigma
        annual = np.clip(mean * np.exp(sd * z[:, _P_ANNUAL] - sd**2 / 2), 0.2 * mean, 5 * mean)
        apps = slice(_P_APPLIANCES, _P_APPLIANCES + n_app)
        owns = (u[:, apps] < self._ownership) & (profile == 0)[:, None]
        mult = np.exp(0.5 * z[:, _P_APPLIANCES + n_app :] - 0.125)  # how busy: mean 1
        replay = profile == PROFILES.index("UCI")
        return _Params(
            keys=keys,
            profile=profile,
            annual_kwh=annual,
            base_kwh=np.maximum(annual - (owns * mult) @ self._yearly_kwh, 0.4 * annual),
            owns=owns,
            rate=owns * mult * self._per_day,
            phases=np.where((u[:, _P_PHASES] < self._three_phase) & ~replay, 3, 1),
            pf=0.88 + 0.10 * u[:, _P_PF],
            thd=1.5 + 4.5 * u[:, _P_THD],
            volt=1.2 * z[:, _P_VOLT],
            replay_offset=(u[:, _P_REPLAY] * (UCI_ROWS // PER_DAY)).astype(np.int64) * PER_DAY,
        )

    def household(self, meter_index: int) -> Household:
        """The drawn parameters of one meter."""
        p = self._params(np.array([meter_index], np.int64))
        owned = tuple(a.name for a, o in zip(self.appliances, p.owns[0], strict=True) if o)
        return Household(
            meter_index,
            PROFILES[int(p.profile[0])],
            float(p.annual_kwh[0]),
            owned,
            int(p.phases[0]),
            float(p.pf[0]),
            float(p.thd[0]),
            int(p.replay_offset[0]) // PER_DAY,
        )

    def _generate(
        self, p: _Params, first: int, count: int, *, running: bool = False
    ) -> tuple[F64, F64, F64 | None]:
        """Energy (Wh), base energy (Wh) and, if asked, summed power of running appliances (W)."""
        lay = _layout(first, count, self.tz, self._noise, self._lookback)
        # Multiplicative log-normal noise: a level per local day and a wander per local hour
        # (Gaussian knots, linearly interpolated), plus white noise per 15-minute interval.
        sd_day, sd_hour, sd_white = self._noise
        days, hours = lay.days, lay.hours
        knots = rnd.normal(rnd.bits(p.keys, _S_HOUR, int(hours[0]), len(hours)), sd_hour)
        knots += rnd.normal(rnd.bits(p.keys, _S_DAY, int(days[0]), len(days)), sd_day)[
            :, lay.day_of_knot
        ]
        base = knots[:, lay.k0] * (1 - lay.a)
        base += knots[:, lay.k0 + 1] * lay.a
        base += rnd.normal(rnd.bits(p.keys, _S_WHITE, first, count), sd_white)
        base -= lay.correction
        np.exp(base, out=base)  # mean 1
        shares = np.zeros((len(PROFILES), count))  # the replay row stays 0
        for i in np.unique(p.profile[p.profile < 3]).tolist():
            shares[i] = profile_shares(PROFILES[i], first, count, self.tz)
        base *= shares[p.profile]
        base *= p.base_kwh[:, None] * 1000.0
        added, power = self._appliance_uses(p, first, count, lay, running)
        energy = base + added
        replay = np.nonzero(p.profile == PROFILES.index("UCI"))[0]
        if len(replay):
            w = local_window(first, count, self.tz)
            energy[replay] = uci_sample().energy_wh[self._replay_rows(p, replay, w)]
            base[replay] = energy[replay]
        return energy, base, power

    def _appliance_uses(
        self, p: _Params, first: int, count: int, lay: _Layout, running: bool
    ) -> tuple[F64, F64 | None]:
        """Energy (Wh) and, if `running`, summed power (W) of appliance uses: (meters, count)."""
        m, lb = len(p.keys), self._lookback
        meter, app = np.nonzero(p.owns)
        if not len(meter):
            return np.zeros((m, count)), np.zeros((m, count)) if running else None
        low, high = lay.low, lay.high
        # Uses per (meter, appliance, local day) are Poisson; each use then draws its start
        # slot (hourly weights), offset in the slot, duration and power from its own hash.
        days = np.arange(low // PER_DAY, high // PER_DAY + 1, dtype=np.int64)
        pair = rnd.mix(p.keys[meter] ^ rnd.mix(app.astype(np.uint64) + np.uint64(1)))
        n = rnd.poisson(
            p.rate[meter, app][:, None],
            rnd.uniform(rnd.bits(pair, _S_USES, int(days[0]), len(days))),
        ).ravel()
        which = np.repeat(np.arange(len(meter) * len(days)), n)
        nth = np.arange(len(which)) - np.repeat(np.cumsum(n) - n, n)
        who, day = which // len(days), days[which % len(days)]
        salt = (day.astype(np.uint64) << np.uint64(8)) ^ nth.astype(np.uint64)
        bits = rnd.mix(pair[who] ^ rnd.mix(salt ^ np.uint64(_S_USE << 44)))
        f = [((bits >> np.uint64(16 * j)) & np.uint64(0xFFFF)) / 65536.0 for j in range(4)]
        a = app[who]
        slot = day * PER_DAY + np.searchsorted(self._cdf, f[0] + a, side="right") - a * PER_DAY
        inside = (slot >= low) & (slot <= high)
        col = lay.lut[slot[inside] - low]
        a, rows = a[inside], meter[who][inside]
        start = col + f[1][inside]
        dur = (self._minutes[a, 0] + self._minutes[a, 1] * f[2][inside]) / 15
        watts = self._power[a, 0] + self._power[a, 1] * f[3][inside]
        j = col[:, None] + np.arange(int(self._span[a].max(initial=0)))[None, :]
        overlap = np.clip(
            np.minimum((start + dur)[:, None], j + 1) - np.maximum(start[:, None], j), 0, 1
        )
        keep = (overlap > 0) & (j >= lb) & (j < lb + count)
        idx = (rows[:, None] * count + j - lb)[keep]
        energy = np.asarray(
            np.bincount(idx, (watts[:, None] * overlap / 4)[keep], m * count), float
        )
        if not running:
            return energy.reshape(m, count), None
        power = np.asarray(
            np.bincount(idx, np.repeat(watts, j.shape[1]).reshape(j.shape)[keep], m * count), float
        )
        return energy.reshape(m, count), power.reshape(m, count)

    @staticmethod
    def _replay_rows(p: _Params, which: I64, w: Window) -> I64:
        sample = uci_sample()
        s0 = int(sample.start[:1].astype("datetime64[m]").astype(np.int64)[0]) // 15
        rows: I64 = (w.local[None, :] - s0 + p.replay_offset[which, None]) % len(sample.energy_wh)
        return rows

    def energy(
        self, meter_indices: Sequence[int] | I64, start: dt.datetime | int, intervals: int
    ) -> I64:
        """Integer Wh per 15-minute interval, shape (meters, intervals), never negative."""
        p = self._params(np.asarray(meter_indices, np.int64).reshape(-1))
        if intervals <= 0 or not len(p.keys):
            return np.zeros((len(p.keys), max(intervals, 0)), np.int64)
        energy, _, _ = self._generate(p, first_interval(start), intervals)
        np.rint(energy, out=energy)
        return np.maximum(energy, 0, out=energy).astype(np.int64)

    def readings(
        self,
        meter_id: str,
        meter_index: int,
        start: dt.datetime | int,
        count: int,
        *,
        with_phasor: bool = False,
        counter_start: int = 1,
    ) -> Iterator[Reading]:
        """`count` consecutive 15-minute readings of one meter from `start` (floored)."""
        if count <= 0:
            return
        first = first_interval(start)
        p = self._params(np.array([meter_index], np.int64))
        energy, base, power = self._generate(p, first, count, running=with_phasor)
        wh = np.maximum(np.rint(energy[0]), 0)
        reports: Sequence[PhasorReport | None] = [None] * count
        if power is not None:  # asked for phasors; their power matches the integer energy
            reports = self._phasors(p, first, count, wh * 4.0, base[0] * 4.0, power[0])
        for i, (e, report) in enumerate(zip(wh.astype(np.int64).tolist(), reports, strict=True)):
            yield Reading(meter_id, counter_start + i, (first + i) * INTERVAL, INTERVAL, e, report)

    def _phasors(
        self, p: _Params, first: int, count: int, watts: F64, base_w: F64, running_w: F64
    ) -> list[PhasorReport]:
        keys = p.keys

        def normal(stream: int) -> F64:
            return rnd.normal(rnd.bits(keys, _S_PHASOR + stream, first, count)).reshape(-1)

        def uniform(stream: int) -> F64:
            return rnd.uniform(rnd.bits(keys, _S_PHASOR + stream, first, count)).reshape(-1)

        freq = (
            50.0 + 0.02 * rnd.normal(rnd.bits(self._fleet_key, _S_FREQ, first, count))[0]
        )  # one grid
        if p.profile[0] != PROFILES.index("UCI"):
            return phasor.synthetic(
                normal,
                uniform,
                freq,
                watts=watts,
                base_w=base_w,
                appliance_w=running_w,
                phases=int(p.phases[0]),
                power_factor=float(p.pf[0]),
                thd=float(p.thd[0]),
                voltage_offset=float(p.volt[0]),
            )
        sample = uci_sample()
        rows = self._replay_rows(p, np.zeros(1, np.int64), local_window(first, count, self.tz))[0]
        return phasor.replayed(
            normal,
            freq,
            watts=watts,
            voltage=sample.voltage_v[rows],
            reactive_var=sample.reactive_var[rows],
            max_power_w=sample.max_power_w[rows].astype(np.float64),
            thd=float(p.thd[0]),
        )


@functools.lru_cache(maxsize=16)
def _fleet(seed: int, profile: str) -> Fleet:
    return Fleet(seed, mix={profile: 1.0})


def interval_energy(
    meter_index: int, start: dt.datetime | int, intervals: int, *, seed: int, profile: str = "H25"
) -> I64:
    """Integer Wh per 15-minute interval for one meter of a single-profile fleet."""
    return _fleet(seed, profile).energy([meter_index], start, intervals).reshape(-1)


def readings(
    meter_id: str,
    meter_index: int,
    start: dt.datetime | int,
    count: int,
    *,
    seed: int,
    profile: str = "H25",
    with_phasor: bool = False,
    counter_start: int = 1,
) -> Iterator[Reading]:
    """Consecutive readings of one meter of a single-profile fleet (see `Fleet.readings`)."""
    return _fleet(seed, profile).readings(
        meter_id, meter_index, start, count, with_phasor=with_phasor, counter_start=counter_start
    )
