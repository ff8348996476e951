"""Each customer's per-day series: what the fraud job keeps of a chunk of readings.

The job streams customers chunk by chunk; of each chunk it keeps only these (customers,
days) series, in float32 (a day's kWh, a correlation or a log needs no more than seven
digits), about 4 KB a customer for 30 days: the population's features are computed from
them afterwards (the neighbourhood needs every customer's days). `wide` gives a series back
in float64 for the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from meterseal.fraud.data import Consumption
from meterseal.fraud.days import summarise
from meterseal.fraud.level_drift import level_changes
from meterseal.fraud.reversal import profile_mirror, reversal_step
from meterseal.fraud.som import ShapeMap, hourly, regular_behaviour, zcurves

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I16 = npt.NDArray[np.int16]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def wide(series: F32) -> F64:
    """A stored series in float64."""
    return np.asarray(series, np.float64)


def _narrow(values: F64) -> F32:
    return np.asarray(values, np.float32).copy()  # a copy: never a view into a chunk's arrays


@dataclass(frozen=True)
class Daily:
    """Per-day series of each customer (customers, days); NaN on missing days."""

    total: F32  # kWh in the day
    base: F32  # standby load: the day's 10th percentile reading
    cv: F32  # coefficient of variation of the day's readings
    lag1: F32  # lag-1 autocorrelation of the day's readings
    zero_run: F32  # longest run of zero readings, as a share of the day
    log_level: F32  # mean log reading (a scaled register shifts it)
    log_spread: F32  # spread of the log readings (a scaled register keeps it)
    corr: F32  # correlation with the regular behaviour (the seed's SOM method)
    corr_typical: F32  # with the population's usual shape
    corr_reversed: F32  # with the population's usual shape reversed in time
    in_region: B  # the day falls in the customer's dominant map region
    node: I16  # best-matching node of the day, -1 when unusable
    current: F32  # (C, D, phases) daily mean current, NaN without phasor
    voltage: F32  # (C, D, phases)
    phasor_kwh: F32  # energy from the phasor's active power
    hours: F32  # (C, D, 24 or slots) energy per hour of the day, 0 on missing days
    reversal_t: F64  # (C,) lasting reversal against the customer's own days (`reversal`)
    reversal_onset: I64  # (C,) its onset day, -1 when none
    level_shift_t: F64  # (C,) lasting drop of the levels its readings sit at (`level_shift`)
    level_shift_onset: I64  # (C,) its onset day, -1 when none
    level_drift_t: F64  # (C,) drift of those levels, week by week (`level_drift`)
    level_drift_onset: I64  # (C,) its onset day, -1 when none
    profile_reversal_t: F64  # (C,) hour-of-day profile mirrored after a split (`reversal`)
    profile_reversal_onset: I64  # (C,) its onset day, -1 when none

    @classmethod
    def concat(cls, parts: Sequence[Daily]) -> Daily:
        """Stack chunks of customers (one field at a time: little more than the result)."""
        columns = []
        for f in fields(cls):
            columns.append(np.concatenate([getattr(p, f.name) for p in parts]))
        return cls(*columns)

    def take(self, rows: I64 | slice) -> Daily:
        """A subset of customers."""
        return Daily(*(getattr(self, f.name)[rows] for f in fields(self)))


def daily(chunk: Consumption, smap: ShapeMap) -> Daily:
    """The per-day series of a chunk of customers (SOM mapping included)."""
    s = summarise(chunk.energy)
    z, usable = zcurves(hourly(s.filled))
    regular = regular_behaviour(smap, z, usable & ~s.missing, s.missing)
    c, d = s.total.shape
    reversal = reversal_step(z, usable & ~s.missing)
    hours = np.where(s.missing[..., None], 0.0, hourly(s.filled))
    # Per chunk, like every other per-customer statistic: over the whole population the
    # profile's running sums would be a (customers, days, 24) float64 array or two.
    mirrored = profile_mirror(hours, ~s.missing)
    shift, drifting = level_changes(chunk.energy)
    if chunk.phasor is None:
        nan3 = np.full((c, d, 3), np.nan)
        current, voltage, phasor_kwh = nan3, nan3, np.full((c, d), np.nan)
    else:
        current, voltage = chunk.phasor.current, chunk.phasor.voltage
        phasor_kwh = chunk.phasor.energy_kwh
    return Daily(
        _narrow(s.total),
        _narrow(s.base),
        _narrow(s.cv),
        _narrow(s.lag1),
        _narrow(s.zero_run),
        _narrow(s.log_level),
        _narrow(s.log_spread),
        _narrow(regular.corr),
        _narrow(regular.corr_typical),
        _narrow(regular.corr_reversed),
        regular.in_region.copy(),
        regular.bmu.astype(np.int16),
        _narrow(current),
        _narrow(voltage),
        _narrow(phasor_kwh),
        _narrow(hours),
        reversal.t,
        reversal.onset,
        shift.t,
        shift.onset,
        drifting.t,
        drifting.onset,
        mirrored.t,
        mirrored.onset,
    )
