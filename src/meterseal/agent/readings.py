"""What a driver read, as meterseal readings: one per load-profile interval, sans-IO.

A reading's counter is its interval's number since the epoch (start // length), as the
simulated meters number theirs (`meterseal.meter.workload`): reading the same window again
gives the same counters, which the head-end recognises as duplicates instead of new energy.
The instantaneous values read in the same pass become the phasor report of the newest
reading (the meter measured them at `read_at`, after that interval closed).
"""

from __future__ import annotations

from collections.abc import Sequence

from meterseal.agent.driver import InstantaneousValues, LoadProfile, ProfileInterval
from meterseal.model import Reading


def reading_of(meter_id: str, interval: ProfileInterval) -> Reading:
    """One interval as a reading of `meter_id` (ReadingError if it is not a valid one)."""
    return Reading(
        meter_id,
        interval.start // interval.seconds,
        interval.start,
        interval.seconds,
        interval.active_import_wh,
    )


def readings_of(
    meter_id: str, profile: LoadProfile, values: InstantaneousValues | None = None
) -> list[Reading]:
    """Every interval of `profile` as a reading, the newest carrying `values` as its phasor."""
    intervals: Sequence[ProfileInterval] = profile.intervals
    readings = [reading_of(meter_id, interval) for interval in intervals]
    if readings and values is not None and values.phases:
        last = readings[-1]
        readings[-1] = Reading(
            last.meter_id,
            last.counter,
            last.timestamp,
            last.interval,
            last.energy_wh,
            values.phasor(),
        )
    return readings
