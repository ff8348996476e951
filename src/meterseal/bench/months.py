"""Signed months straight into the store: what a fleet's readings leave behind after ingest.

The billing benchmark and the billing tests start where the SGX billing paper's aggregation
experiment starts: signed originals already in the database. Producing them through the
transports would only repeat the acquisition benchmark, so meters sign their readings here
(the same `sign_reading` as on the wire) and the rows are written as ingest writes them.
Workers are forked with the fleet in module state, as in `meter.workload`: keys are never pickled.
It lives with the benches, not under `meter/`: it writes past ingest straight into the
head-end's store, which no meter can, and only the billing bench and test fixtures need it.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.records import AcceptedReading
from meterseal.crypto.packet import sign_reading
from meterseal.meter.load import Fleet
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.model import Reading
from meterseal.storage.store import Store

CHUNK = 4  # meters per task: a month of one meter is 2,880 signatures

_current: tuple[Sequence[ProvisionedMeter], int, int, dt.datetime, Anonymizer, int] | None = None


def signed_month(index: int) -> list[AcceptedReading]:
    """Meter `index`'s signed readings as ingest stores them (in a forked worker or inline)."""
    assert _current is not None, "call through sign_months"
    meters, start, intervals, now, anonymizer, seed = _current
    meter = meters[index]
    meter_id = meter.key.meter_id
    energy = Fleet(seed).energy([index], start, intervals)[0].tolist()
    first = start // INTERVAL
    suite = meter.key.suite
    pseudonym = anonymizer.pseudonym(meter_id)
    received = time.time()
    out = []
    for i, wh in enumerate(energy):
        reading = Reading(meter_id, first + i, (first + i) * INTERVAL, INTERVAL, int(wh))
        signed = sign_reading(reading, meter.key, suite, now=now)
        out.append(
            AcceptedReading(
                meter_id,
                reading.counter,
                reading.timestamp,
                INTERVAL,
                reading.energy_wh,
                suite.name,
                signed,
                int(now.timestamp()),
                received,
                meter.region_id,
                pseudonym,
            )
        )
    return out


def _chunk(indices: range) -> list[list[AcceptedReading]]:
    return [signed_month(i) for i in indices]


def sign_months(
    meters: Sequence[ProvisionedMeter],
    start: int,
    intervals: int,
    *,
    now: dt.datetime,
    anonymization_key: bytes,
    profile_seed: int = 7,
    workers: int | None = None,
) -> Iterator[list[list[AcceptedReading]]]:
    """Chunks of meters' signed months, in meter order, signed on every core."""
    global _current
    _current = (meters, start, intervals, now, Anonymizer(anonymization_key), profile_seed)
    chunks = [range(i, min(i + CHUNK, len(meters))) for i in range(0, len(meters), CHUNK)]
    workers = workers or min(os.cpu_count() or 1, len(chunks)) or 1
    try:
        if workers == 1:
            yield from map(_chunk, chunks)
            return
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            yield from pool.map(_chunk, chunks)
    finally:
        _current = None


def store_months(
    store: Store,
    meters: Sequence[ProvisionedMeter],
    start: int,
    intervals: int,
    *,
    now: dt.datetime,
    anonymization_key: bytes,
    progress: Callable[[int], object] = lambda _n: None,
    workers: int | None = None,
) -> int:
    """Sign and store `intervals` readings per meter; the number of rows stored."""
    stored = 0
    for chunk in sign_months(
        meters, start, intervals, now=now, anonymization_key=anonymization_key, workers=workers
    ):
        rows = [r for month in chunk for r in month]
        stored += sum(o == "stored" for o in store.save_batch(rows, []))
        progress(len(chunk))
    return stored
