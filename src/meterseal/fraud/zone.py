"""The meters' time zone estimated from the readings, when the user asks for it (`--tz auto`).

Households use least electricity in the small hours: averaged over customers (each reading
divided by its customer's mean), the 3-hour window of lowest load centres on about
`TROUGH_HOUR` local time. Where that window falls in UTC gives a fixed offset from UTC
(no daylight saving: name the zone with --tz when it has one). The estimate is said out
loud, with the hour it rests on; it is never applied silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
TROUGH_HOUR = 4  # local hour households' night trough centres on
HOUR = 3_600


@dataclass(frozen=True)
class Estimate:
    """A fixed UTC offset estimated from the night trough, and what it rests on."""

    offset_hours: int  # local = UTC + offset
    trough_utc_hour: float  # centre of the 3-hour window of lowest load, UTC
    depth: float  # trough load / mean load (small: a clear night trough)

    @property
    def zone(self) -> str:
        """The IANA name of the fixed offset (Etc/GMT signs are inverted by POSIX)."""
        if self.offset_hours == 0:
            return "UTC"
        return f"Etc/GMT{-self.offset_hours:+d}"

    def describe(self) -> str:
        """One sentence for the terminal."""
        sign = "+" if self.offset_hours >= 0 else "-"
        return (
            f"time zone estimated from the readings: UTC{sign}{abs(self.offset_hours):02d}:00 "
            f"({self.zone}); the customers' night trough centres on "
            f"{self.trough_utc_hour:04.1f} h UTC (load {self.depth:.0%} of the mean), "
            f"~{TROUGH_HOUR:02d}:00 local in households; pass --tz NAME to set the zone"
        )


def hourly_sums(customer: I64, timestamps: I64, kwh: F64, customers: int) -> tuple[F64, F64]:
    """Each customer's energy and readings by UTC hour, (customers, 24): what `estimate`
    rests on, summed a chunk of rows at a time by the streaming reader."""
    ok = ~np.isnan(kwh)
    cell = customer[ok] * 24 + (timestamps[ok] % 86_400) // HOUR
    size = customers * 24
    sums = np.bincount(cell, kwh[ok], size).astype(np.float64).reshape(customers, 24)
    counts = np.bincount(cell, None, size).astype(np.float64).reshape(customers, 24)
    return sums, counts


def estimate(customer: I64, timestamps: I64, kwh: F64) -> Estimate:
    """The fixed offset whose local night trough centres on `TROUGH_HOUR`.

    customer: each reading's customer index; timestamps: UTC seconds; kwh: NaN = missing.
    """
    customers = int(customer.max()) + 1 if len(customer) else 0
    return from_hourly(*hourly_sums(customer, timestamps, kwh, customers))


def from_hourly(sums: F64, counts: F64) -> Estimate:
    """`estimate` from each customer's energy and readings by UTC hour (`hourly_sums`):
    every reading divided by its customer's mean, averaged by hour of the day."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(1) / counts.sum(1)
        usable = np.isfinite(1.0 / mean) & (mean > 0)
    relative = sums[usable] / mean[usable, None]
    profile = relative.sum(0) / np.maximum(counts[usable].sum(0), 1)
    window = profile + np.roll(profile, -1) + np.roll(profile, -2)  # hours h, h+1, h+2
    low = int(np.argmin(window))
    centre = (low + 1) % 24
    offset = (TROUGH_HOUR - centre + 12) % 24 - 12
    if offset == -12:
        offset = 12
    depth = float(window[low] / 3.0 / max(float(profile.mean()), 1e-12))
    return Estimate(int(offset), float(centre) + 0.5, depth)
