"""A fleet's month on the wire: consumption from the load model, sealed in parallel, faults applied.

Sealing is the meters' work, not the head-end's, so benchmarks and demos do it before they
start the clock. Worker processes are forked after the fleet is in module state: keys never
travel through pickles, and each worker seals whole meters.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from meterseal.crypto.keys import HeadEndPublicKeys
from meterseal.meter.faults import Fault, FaultPlan
from meterseal.meter.load import Fleet
from meterseal.meter.profiles import INTERVAL, first_interval
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.meter.simulator import seal_meter
from meterseal.model import Reading

Wire = dict[str, list[tuple[Fault, bytes]]]
CHUNK = 16  # meters per task: big enough to amortise, small enough for a smooth progress bar


@dataclass(frozen=True)
class Workload:
    """What to send: which meters, which window of 15-minute intervals, which faults."""

    meters: Sequence[ProvisionedMeter]
    public: HeadEndPublicKeys
    start: int  # Unix seconds, floored to the interval
    intervals: int
    plan: FaultPlan = field(default_factory=FaultPlan)
    seed: int = 1
    profile_seed: int = 7

    def readings(self, index: int, model: Fleet) -> list[Reading]:
        """Meter `index`'s readings; the counter is the interval number, so reruns continue."""
        meter_id = self.meters[index].key.meter_id
        first = first_interval(self.start)
        energy = model.energy([index], self.start, self.intervals)[0].tolist()
        return [
            Reading(meter_id, first + i, (first + i) * INTERVAL, INTERVAL, int(wh))
            for i, wh in enumerate(energy)
        ]


_current: tuple[Workload, Fleet, dt.datetime] | None = None


def _seal_chunk(indices: range) -> list[tuple[str, list[tuple[Fault, bytes]]]]:
    assert _current is not None, "forked workers inherit the workload"
    work, model, now = _current
    return [
        (
            work.meters[i].key.meter_id,
            seal_meter(
                work.meters[i],
                work.readings(i, model),
                work.public,
                plan=work.plan,
                seed=work.seed,
                now=now,
            ),
        )
        for i in indices
    ]


def seal_workload(
    work: Workload,
    *,
    now: dt.datetime,
    workers: int | None = None,
    progress: Callable[[int], object] = lambda _n: None,
) -> Wire:
    """Every meter's packets in wire order, keyed by meter id; `progress` gets meters done."""
    global _current
    _current = (work, Fleet(work.profile_seed), now)
    chunks = [range(i, min(i + CHUNK, len(work.meters))) for i in range(0, len(work.meters), CHUNK)]
    workers = workers or min(os.cpu_count() or 1, len(chunks)) or 1
    wire: Wire = {}
    try:
        if workers == 1:
            for chunk in chunks:
                wire.update(_seal_chunk(chunk))
                progress(len(chunk))
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for chunk, sealed in zip(chunks, pool.map(_seal_chunk, chunks), strict=True):
                    wire.update(sealed)
                    progress(len(chunk))
    finally:
        _current = None
    return wire
