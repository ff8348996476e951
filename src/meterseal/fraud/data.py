"""What the fraud job reads: customers' consumption as periods (days) of equal slots.

`Consumption` holds energy in kWh per slot, shape (customers, periods, slots), NaN where a
reading is missing; for 15-minute data a period is a local day of the meters' time zone
(midnight to midnight on the wall clock, 96 slots), for the SGCC daily layout a week of 7
days. On the days clocks change, the skipped hour's slots are missing and the repeated
hour's two readings share their slots (their mean). Phasor reports, when present, are kept
as daily aggregates per phase (`PhasorDays`). Sans-IO: the readers in `fraud.readers` build
these from files and the store; `from_arrays` builds one from plain arrays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterseal.errors import ConfigurationError, MetersealError
from meterseal.meter.theft import LocalDays, local_clock

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY = 86_400
MAX_PHASES = 3


class FraudDataError(MetersealError):
    """Consumption data the fraud job cannot use (names the file, row or customer)."""


class UnknownCustomer(FraudDataError):
    """A customer asked for is not in the data."""


@dataclass(frozen=True)
class PhasorDays:
    """Daily means per phase of the phasor reports: shape (customers, periods, phases).

    NaN where a phase does not exist or the day has no report; `energy_kwh` is the energy
    the phasor's active power accounts for over the day (C, D), NaN without reports.
    """

    voltage: F64
    current: F64
    energy_kwh: F64

    def take(self, rows: I64 | slice) -> PhasorDays:
        """The same aggregates for a subset of customers."""
        return PhasorDays(self.voltage[rows], self.current[rows], self.energy_kwh[rows])


@dataclass(frozen=True)
class Consumption:
    """Customers' energy in kWh per slot, (customers, periods, slots); NaN = missing."""

    customers: tuple[str, ...]
    first_day: dt.date
    energy: F64
    period_days: int = 1  # 1: a period is a day; 7: a week (daily data such as SGCC)
    regions: tuple[str, ...] | None = None
    phasor: PhasorDays | None = None
    tz: str | None = None  # the zone whose local days the periods are (None: dates as given)

    def __post_init__(self) -> None:
        shape = self.energy.shape
        if self.energy.ndim != 3 or shape[0] != len(self.customers):
            raise FraudDataError(
                f"energy must be (customers, periods, slots) with one row per customer, "
                f"got {shape} for {len(self.customers)} customers"
            )
        if len(set(self.customers)) != len(self.customers):
            raise FraudDataError("customer ids must be unique")
        if self.regions is not None and len(self.regions) != len(self.customers):
            raise FraudDataError("one region per customer")
        if np.nanmin(self.energy, initial=0.0) < 0:
            c, p, s = (int(v[0]) for v in np.nonzero(self.energy < 0))
            raise FraudDataError(
                f"negative reading for customer {self.customers[c]!r} on "
                f"{self.period_start(p)} slot {s}: consumption cannot be negative "
                "(export/net metering is not supported)"
            )
        if self.phasor is not None and self.phasor.current.shape[:2] != shape[:2]:
            raise FraudDataError("phasor aggregates must be (customers, periods, phases)")

    @property
    def slots(self) -> int:
        """Readings per period."""
        return int(self.energy.shape[2])

    @property
    def periods(self) -> int:
        """Periods (days or weeks) in the window."""
        return int(self.energy.shape[1])

    def period_start(self, period: int) -> dt.date:
        """The first day of a period."""
        return self.first_day + dt.timedelta(days=period * self.period_days)

    def index(self, customer: str) -> int:
        """Row of a customer; `UnknownCustomer` if absent."""
        try:
            return self.customers.index(customer)
        except ValueError:
            raise UnknownCustomer(f"no customer {customer!r} in the data") from None

    def take(self, rows: I64 | slice) -> Consumption:
        """The same data for a subset of customers (rows in this order)."""
        picked = np.arange(len(self.customers))[rows]
        return Consumption(
            tuple(self.customers[i] for i in picked.tolist()),
            self.first_day,
            self.energy[rows],
            self.period_days,
            None if self.regions is None else tuple(self.regions[i] for i in picked.tolist()),
            None if self.phasor is None else self.phasor.take(rows),
            self.tz,
        )

    def chunks(self, size: int) -> Iterable[Consumption]:
        """Consecutive slices of at most `size` customers."""
        for start in range(0, len(self.customers), size):
            yield self.take(slice(start, start + size))


def grid(timestamps: I64) -> int:
    """The reading interval in seconds: the most common step, which must divide a day."""
    steps = np.diff(np.unique(timestamps))
    if not len(steps):
        return 900
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    if DAY % step:
        raise FraudDataError(f"reading interval of {step} s does not divide a day")
    return step


def wall_grid(values: F64, days: LocalDays, slots: int = 96) -> F64:
    """A run of local days (rows, intervals, ...) on the wall-clock grid (rows, days, slots,
    ...): a skipped hour's slots are NaN, a repeated hour's two values are averaged."""
    rows, intervals = values.shape[:2]
    rest = values.shape[2:]
    if intervals == days.days * slots and np.array_equal(
        days.clock, np.tile(np.arange(slots), days.days)
    ):
        return values.reshape(rows, days.days, slots, *rest)
    cell = days.day_index() * slots + days.clock
    flat = values.reshape(rows, intervals, -1).transpose(1, 0, 2)
    sums = np.zeros((days.days * slots, rows, flat.shape[2]))
    np.add.at(sums, cell, flat)
    counts = np.bincount(cell, minlength=days.days * slots)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / counts, np.nan).transpose(1, 0, 2)
    return out.reshape(rows, days.days, slots, *rest)


def _cells(customer_of: Sequence[str], timestamps: I64, step: int, tz: str) -> tuple[I64, int, int]:
    """Each reading's local day (from the first) and wall-clock slot; the first day, the days."""
    try:
        day, second = local_clock(tz, timestamps)
    except ConfigurationError as exc:
        raise FraudDataError(str(exc)) from None
    day0 = int(day.min())
    return (day - day0) * (DAY // step) + second // step, day0, int(day.max()) - day0 + 1


def from_arrays(
    customer_of: Sequence[str],
    timestamps: I64,
    kwh: F64,
    *,
    voltage: F64 | None = None,
    current: F64 | None = None,
    power_w: F64 | None = None,
    regions: dict[str, str] | None = None,
    tz: str,
) -> Consumption:
    """Long data (one reading a row, UTC timestamps) to local days of slots in zone `tz`;
    phasor arrays are (rows, phases)."""
    ids, who = np.unique(np.asarray(customer_of, dtype=object), return_inverse=True)
    step = grid(timestamps)
    if np.any(timestamps % step):
        bad = int(np.argmax(timestamps % step != 0))
        raise FraudDataError(
            f"reading of {customer_of[bad]!r} at {timestamps[bad]} is off the {step}-s grid"
        )
    instant = who * (int(timestamps.max()) // step + 1) + timestamps // step
    if len(np.unique(instant)) != len(instant):
        _, first, counts = np.unique(instant, return_index=True, return_counts=True)
        dup = int(first[np.argmax(counts > 1)])
        raise FraudDataError(f"two readings of {customer_of[dup]!r} at {timestamps[dup]}")
    local, day0, days = _cells(customer_of, timestamps, step, tz)
    slots = DAY // step
    flat = who * (days * slots) + local
    cells = len(ids) * days * slots
    present = ~np.isnan(kwh)
    # The repeated hour of a clock change puts two readings in one slot: their mean.
    sums = np.bincount(flat[present], kwh[present], cells)
    counts = np.bincount(flat[present], minlength=cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        energy = np.where(counts > 0, sums / counts, np.nan)
    phasor = None
    if current is not None:
        phasor = _phasor_days(flat // slots, len(ids), days, voltage, current, power_w)
    return Consumption(
        tuple(str(i) for i in ids),
        dt.date(1970, 1, 1) + dt.timedelta(days=day0),
        energy.reshape(len(ids), days, slots),
        regions=None if regions is None else tuple(regions.get(str(i), "") for i in ids),
        phasor=phasor,
        tz=tz,
    )


def _phasor_days(
    cell: I64,
    customers: int,
    days: int,
    voltage: F64 | None,
    current: F64,
    power_w: F64 | None,
) -> PhasorDays:
    """Daily means per phase (NaN where a phase reports nothing); `cell` = customer*days + day."""
    cells = customers * days
    phases = current.shape[1]
    out = {}
    for name, values in (("voltage", voltage), ("current", current)):
        acc = np.full((cells, MAX_PHASES), np.nan)
        if values is not None:
            for k in range(phases):
                present = ~np.isnan(values[:, k])
                sums = np.bincount(cell[present], values[present, k], cells)
                counts = np.bincount(cell[present], minlength=cells)
                with np.errstate(invalid="ignore", divide="ignore"):
                    acc[:, k] = np.where(counts > 0, sums / counts, np.nan)
        out[name] = acc.reshape(customers, days, MAX_PHASES)
    energy = np.full(cells, np.nan)
    if power_w is not None:
        total = np.nansum(power_w, axis=1)
        present = ~np.all(np.isnan(power_w), axis=1)
        sums = np.bincount(cell[present], total[present], cells)
        counts = np.bincount(cell[present], minlength=cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            energy = np.where(counts > 0, sums / counts * 24.0 / 1000.0, np.nan)
    return PhasorDays(out["voltage"], out["current"], energy.reshape(customers, days))
