"""The HIGH stream from the head-end: accepted or stored (anonymized) readings as publications.

Both carry what the anonymize stage left: region, pseudonym, time span and energy; never a
meter id. `stored_readings` reads the store's anonymized measurements (a repository in the
store's own sense: it only shares the store's connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

import sqlalchemy as sa

from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.member import Publisher
from meterseal.storage import Store
from meterseal.storage.schema import measurements

PAGE = 10_000


class Anonymized(Protocol):
    """What a HIGH reading publication needs (AcceptedReading has it)."""

    @property
    def region_id(self) -> str: ...
    @property
    def pseudonym(self) -> bytes: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def interval(self) -> int: ...
    @property
    def energy_wh(self) -> int: ...


class StoredReading(NamedTuple):
    """One anonymized measurement as stored."""

    region_id: str
    pseudonym: bytes
    timestamp: int
    interval: int
    energy_wh: int


def reading_publication(publisher: Publisher, reading: Anonymized, *, at: int) -> list[bytes]:
    """One anonymized reading as a HIGH `reading` publication."""
    return publisher.seal(
        PrivacyLevel.HIGH,
        "reading",
        {"wh": reading.energy_wh},
        at=at,
        region=reading.region_id,
        customer=reading.pseudonym,
        start=reading.timestamp,
        interval=reading.interval,
    )


def publish_accepted(
    publisher: Publisher, readings: Iterable[Anonymized], *, at: int
) -> list[list[bytes]]:
    """A batch of publications, one per reading, for the router."""
    return [reading_publication(publisher, r, at=at) for r in readings]


def stored_readings(store: Store, start: int, end: int) -> Iterator[list[StoredReading]]:
    """The stored measurements with timestamps in [start, end), in pages, in data-time order.

    Data time, not ingest order: a fleet's day arrives meter by meter (each meter sends its
    96 readings in a row), and in that order the aggregator, whose frames close on data
    time, would see the first meter's end of day, close every earlier hour and drop the
    other meters' readings as late (93% of a simulated day). One query, read as it streams.
    """
    m = measurements
    query = (
        sa.select(m.c.region_id, m.c.pseudonym, m.c.timestamp, m.c.interval, m.c.energy_wh)
        .where(m.c.timestamp >= start, m.c.timestamp < end)
        .order_by(m.c.timestamp, m.c.id)
    )
    with store.connection() as connection:
        result = connection.execution_options(stream_results=True, yield_per=PAGE).execute(query)
        for rows in result.partitions(PAGE):
            yield [StoredReading(r, bytes(p), int(t), int(i), int(e)) for r, p, t, i, e in rows]
