"""A labelled fleet for evaluation: the load model's consumption with theft injected.

The fast path, as the benchmark needs it: consumption straight from `meter.load.Fleet`
(no sealing, no transport), altered by `meter.theft` exactly as the simulator's hook alters
readings. With `phasor=True` each interval also gets per-phase voltage, current and power
(`_phasors`), altered with the energy and kept as daily aggregates. Days are local days of
the fleet's zone (`tz`), cut as the fraud job's readers cut them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.fraud.data import MAX_PHASES, Consumption, PhasorDays, wall_grid
from meterseal.meter.load import Fleet
from meterseal.meter.phasor import NOMINAL_VOLTAGE, clip_voltage, phase_arrays
from meterseal.meter.theft import DEFAULT_TZ, Alteration, LocalDays, TheftPlan, alter_run

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
CHUNK = 1_000  # meters generated at once


@dataclass(frozen=True)
class Labelled:
    """Consumption with the truth: each customer's alteration (theft or honest change)."""

    data: Consumption
    alterations: dict[str, Alteration]

    @property
    def thief(self) -> npt.NDArray[np.bool_]:
        """True for each customer that steals."""
        return np.array(
            [c in self.alterations and self.alterations[c].theft for c in self.data.customers]
        )

    @property
    def patterns(self) -> list[str]:
        """Each customer's theft pattern, or '' for honest customers."""
        return [
            str(self.alterations[c].kind)
            if c in self.alterations and self.alterations[c].theft
            else ""
            for c in self.data.customers
        ]


@dataclass(frozen=True)
class FleetSpec:
    """Which simulated customers, over which days, with which thefts."""

    customers: int
    first_day: dt.date
    days: int
    plan: TheftPlan
    seed: int = 7
    three_phase_share: float = 0.3
    regions: int = 8
    phasor: bool = False
    tz: str = DEFAULT_TZ  # the households' zone: their days, and the thieves'

    @property
    def local_days(self) -> LocalDays:
        """The window's local days as one run of intervals."""
        return LocalDays.of(self.tz, self.first_unix_day, self.days)

    @property
    def first_unix_day(self) -> int:
        """The first day as a Unix day number."""
        return (self.first_day - dt.date(1970, 1, 1)).days

    def fleet(self) -> Fleet:
        """The load model behind these customers."""
        return Fleet(self.seed, three_phase_share=self.three_phase_share, tz=self.tz)

    def names(self) -> tuple[str, ...]:
        """Customer ids, one per meter index."""
        return tuple(f"C{i:06d}" for i in range(self.customers))

    def region_names(self) -> tuple[str, ...]:
        """Each customer's region."""
        return tuple(f"R{i % self.regions:02d}" for i in range(self.customers))

    def alterations(self, fleet: Fleet) -> dict[int, Alteration]:
        """The plan applied to these meters."""
        return self.plan.assign(
            range(self.customers),
            self.first_unix_day,
            self.days,
            phases=lambda i: fleet.household(i).phases,
        )


def _phasors(spec: FleetSpec, fleet: Fleet, meters: range, wh: F64) -> tuple[F64, F64, F64]:
    """Per-interval phase voltage (V), current (A) and power (W) for a chunk, (M, T, 3).

    The model of `meter.phasor.synthetic` (voltage N(230 + offset, 1.6) within EN 50160,
    the household's power factor with a little noise, a random split over three phases),
    vectorised with NumPy's generator seeded by (fleet seed, first meter) instead of the
    load model's per-reading hashes: no `PhasorReport` objects, about 100 times faster.
    Single-phase meters carry NaN on the second and third phase.
    """
    rng = np.random.default_rng((spec.seed, meters.start, 0xF4A5))
    m = len(meters)
    shape = wh.shape
    phases = np.array([fleet.household(i).phases for i in meters])
    pf_mean = np.array([fleet.household(i).power_factor for i in meters])
    three = (phases == 3)[:, None, None]
    raw = np.exp(0.3 * rng.standard_normal((*shape, MAX_PHASES)))
    split = np.where(three, raw / raw.sum(-1, keepdims=True), np.array([1.0, 0.0, 0.0]))
    offset = 1.2 * rng.standard_normal(m)[:, None, None]
    volts = clip_voltage(NOMINAL_VOLTAGE + offset + 1.6 * rng.standard_normal((*shape, 3)))
    pf = np.clip(pf_mean[:, None] + 0.02 * rng.standard_normal(shape), 0.85, 0.99)
    arrays = phase_arrays(
        (wh * 4.0).reshape(-1),
        volts.reshape(-1, 3),
        pf.reshape(-1),
        np.zeros(pf.size, bool),
        split.reshape(-1, 3),
    )
    missing = np.where(three, 1.0, np.array([1.0, np.nan, np.nan]))
    power = arrays.active_power.reshape(*shape, 3) * missing
    return volts * missing, arrays.current.reshape(*shape, 3) * missing, power


def _alter(
    fleet: Fleet,
    days: LocalDays,
    i: int,
    alt: Alteration,
    wh: F64,
    phasor: tuple[F64, F64, F64] | None,
) -> None:
    """One meter's run of intervals altered in place: energy (T,), phasor arrays (T, 3)."""
    count = fleet.household(i).phases
    if phasor is not None:
        volts, amps, power = phasor
        honest = np.nan_to_num(power[:, :count])
    else:  # an even split, only to alter one phase
        honest = np.repeat((wh * 4.0 / count)[:, None], count, axis=1)
    altered_wh, altered = alter_run(alt, days, wh, honest)
    assert altered is not None
    wh[:] = altered_wh
    if phasor is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(honest > 0, altered / honest, np.nan)
            amps[:, :count] = np.where(
                honest > 0, amps[:, :count] * ratio, altered / volts[:, :count]
            )
        power[:, :count] = altered


def _daily_means(values: F64, days: LocalDays) -> F64:
    """Mean of each local day of a run (M, T, ...) -> (M, D, ...)."""
    lengths = np.diff(days.bounds).reshape(1, -1, *([1] * (values.ndim - 2)))
    means: F64 = np.add.reduceat(values, days.bounds[:-1], axis=1) / lengths
    return means


def fleet_chunks(
    spec: FleetSpec, size: int = CHUNK
) -> Iterator[tuple[range, Consumption, dict[int, Alteration]]]:
    """The labelled fleet chunk by chunk: (meters, their consumption, their alterations)."""
    fleet = spec.fleet()
    alterations = spec.alterations(fleet)
    days = spec.local_days
    names, regions = spec.names(), spec.region_names()
    for first in range(0, spec.customers, size):
        meters = range(first, min(first + size, spec.customers))
        raw = fleet.energy(np.arange(meters.start, meters.stop), days.start, days.intervals)
        wh = raw.astype(np.float64)
        arrays = _phasors(spec, fleet, meters, wh) if spec.phasor else None
        for i in meters:
            if i in alterations:
                j = i - first
                one = None if arrays is None else (arrays[0][j], arrays[1][j], arrays[2][j])
                _alter(fleet, days, i, alterations[i], wh[j], one)
        phasor = None
        if arrays is not None:
            volts, amps, power = arrays
            phasor = PhasorDays(
                _daily_means(volts, days),
                _daily_means(amps, days),
                _daily_means(np.nansum(power, axis=2), days) * 24.0 / 1000.0,
            )
        data = Consumption(
            names[first : meters.stop],
            spec.first_day,
            wall_grid(wh / 1000.0, days),
            regions=regions[first : meters.stop],
            phasor=phasor,
            tz=spec.tz,
        )
        yield meters, data, {i: alterations[i] for i in meters if i in alterations}


def labelled_fleet(
    spec: FleetSpec, *, progress: Callable[[int], object] = lambda _n: None
) -> Labelled:
    """The whole labelled fleet in memory."""
    parts: list[Consumption] = []
    alterations: dict[int, Alteration] = {}
    for meters, data, altered in fleet_chunks(spec):
        parts.append(data)
        alterations.update(altered)
        progress(len(meters))
    names = spec.names()
    phasors = [p.phasor for p in parts if p.phasor is not None]
    data = Consumption(
        names,
        spec.first_day,
        np.concatenate([p.energy for p in parts]),
        regions=spec.region_names(),
        phasor=PhasorDays(
            np.concatenate([p.voltage for p in phasors]),
            np.concatenate([p.current for p in phasors]),
            np.concatenate([p.energy_kwh for p in phasors]),
        )
        if phasors
        else None,
        tz=spec.tz,
    )
    return Labelled(data, {names[i]: a for i, a in alterations.items()})
