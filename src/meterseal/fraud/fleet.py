"""A labelled fleet for evaluation: the load model's consumption with theft injected.

The fast path, as the benchmark needs it: consumption straight from `meter.load.Fleet`
(no sealing, no transport), altered by `meter.theft` exactly as the simulator's hook alters
readings. With `phasor=True` each interval also gets per-phase voltage, current and power
(`_phasors`), altered with the energy and kept as daily aggregates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.fraud.data import MAX_PHASES, Consumption, PhasorDays
from meterseal.meter.load import PER_DAY, Fleet
from meterseal.meter.phasor import NOMINAL_VOLTAGE, clip_voltage, phase_arrays
from meterseal.meter.theft import DAY_SECONDS, Alteration, TheftPlan, alter_days

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

    @property
    def first_unix_day(self) -> int:
        """The first day as a Unix day number."""
        return (self.first_day - dt.date(1970, 1, 1)).days

    def fleet(self) -> Fleet:
        """The load model behind these customers."""
        return Fleet(self.seed, three_phase_share=self.three_phase_share)

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
    """Per-interval phase voltage (V), current (A) and power (W) for a chunk, (M, D, 96, 3).

    The model of `meter.phasor.synthetic` (voltage N(230 + offset, 1.6) within EN 50160,
    the household's power factor with a little noise, a random split over three phases),
    vectorised with NumPy's generator seeded by (fleet seed, first meter) instead of the
    load model's per-reading hashes: no `PhasorReport` objects, about 100 times faster.
    Single-phase meters carry NaN on the second and third phase.
    """
    rng = np.random.default_rng((spec.seed, meters.start, 0xF4A5))
    m = len(meters)
    shape = (m, spec.days, PER_DAY)
    phases = np.array([fleet.household(i).phases for i in meters])
    pf_mean = np.array([fleet.household(i).power_factor for i in meters])
    three = (phases == 3)[:, None, None, None]
    raw = np.exp(0.3 * rng.standard_normal((*shape, MAX_PHASES)))
    split = np.where(three, raw / raw.sum(-1, keepdims=True), np.array([1.0, 0.0, 0.0]))
    offset = 1.2 * rng.standard_normal(m)[:, None, None, None]
    volts = clip_voltage(NOMINAL_VOLTAGE + offset + 1.6 * rng.standard_normal((*shape, 3)))
    pf = np.clip(pf_mean[:, None, None] + 0.02 * rng.standard_normal(shape), 0.85, 0.99)
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


def fleet_chunks(
    spec: FleetSpec, size: int = CHUNK
) -> Iterator[tuple[range, Consumption, dict[int, Alteration]]]:
    """The labelled fleet chunk by chunk: (meters, their consumption, their alterations)."""
    fleet = spec.fleet()
    alterations = spec.alterations(fleet)
    start = spec.first_unix_day * DAY_SECONDS
    names, regions = spec.names(), spec.region_names()
    for first in range(0, spec.customers, size):
        meters = range(first, min(first + size, spec.customers))
        raw = fleet.energy(np.arange(meters.start, meters.stop), start, spec.days * PER_DAY)
        wh = raw.reshape(len(meters), spec.days, PER_DAY).astype(np.float64)
        if spec.phasor:
            volts, amps, power = _phasors(spec, fleet, meters, wh)
        for i in meters:
            if i not in alterations:
                continue
            j = i - first
            count = fleet.household(i).phases
            if spec.phasor:
                honest = np.nan_to_num(power[j, ..., :count])
            else:  # an even split, only to alter one phase
                honest = np.repeat((wh[j] * 4.0 / count)[..., None], count, axis=2)
            altered_wh, altered = alter_days(alterations[i], spec.first_unix_day, wh[j], honest)
            assert altered is not None
            wh[j] = altered_wh
            if spec.phasor:
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = np.where(honest > 0, altered / honest, np.nan)
                    amps[j, ..., :count] = np.where(
                        honest > 0, amps[j, ..., :count] * ratio, altered / volts[j, ..., :count]
                    )
                power[j, ..., :count] = altered
        phasor = None
        if spec.phasor:
            phasor = PhasorDays(
                volts.mean(2), amps.mean(2), np.nansum(power, axis=3).mean(2) * 24.0 / 1000.0
            )
        data = Consumption(
            names[first : meters.stop],
            spec.first_day,
            wh / 1000.0,
            regions=regions[first : meters.stop],
            phasor=phasor,
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
    )
    return Labelled(data, {names[i]: a for i, a in alterations.items()})
