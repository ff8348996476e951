"""The store's imported readings no meter signed, and the customer-meter assignments.

`unsigned_readings` keeps each imported reading with its canonical record
(`billing.unsigned`), apart from the signed originals, so nothing that reads those mistakes
one for a meter's signed reading. `meter_assignments` says which customer a meter belongs to
when ([valid_from, valid_to) in Unix seconds).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from meterseal.acquisition.records import StoreOutcome
from meterseal.billing.compute import BillPacket
from meterseal.billing.unsigned import UnsignedReading
from meterseal.storage.schema import (
    meter_assignments,
    meters,
    signed_originals,
    unsigned_readings,
)
from meterseal.storage.store import Store


class Assignment(NamedTuple):
    """A meter's customer from `valid_from` until `valid_to` (None: still)."""

    customer_id: str
    meter_id: str
    valid_from: int
    valid_to: int | None


class Window(NamedTuple):
    """[start, end) in Unix seconds."""

    start: int
    end: int

    def holds(self, timestamp: int) -> bool:
        """Whether `timestamp` falls inside."""
        return self.start <= timestamp < self.end


class ImportStore:
    """Unsigned readings and assignments over one `Store` (its engine and transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def meter_ids(self) -> set[str]:
        """The registered meters' ids."""
        with self.store.connection() as connection:
            return set(connection.scalars(sa.select(meters.c.meter_id)))

    def save_unsigned(
        self, readings: Sequence[UnsignedReading], *, source: str, now: dt.datetime
    ) -> list[StoreOutcome]:
        """Keep new readings in one transaction; per reading STORED, DUPLICATE or CONFLICT.

        DUPLICATE: the same record is stored already (or earlier in `readings`); CONFLICT: a
        different record is stored under the meter and timestamp, and is kept.
        """
        records = [r.to_cbor() for r in readings]
        first: dict[tuple[str, int], bytes] = {}
        for r, record in zip(readings, records, strict=True):
            first.setdefault((r.meter_id, r.timestamp), record)
        with self.store.transaction() as connection:
            stored = _stored(connection, list(first))
            new = [
                {
                    "meter_id": r.meter_id,
                    "timestamp": r.timestamp,
                    "interval": r.interval,
                    "energy_wh": r.energy_wh,
                    "quality": r.quality,
                    "record": record,
                    "source": source,
                    "imported_at": now,
                }
                for r, record in zip(readings, records, strict=True)
                if (r.meter_id, r.timestamp) not in stored
                and first[(r.meter_id, r.timestamp)] is record
            ]
            if new:
                connection.execute(unsigned_readings.insert(), new)
        outcomes = []
        claimed: set[tuple[str, int]] = set()
        for r, record in zip(readings, records, strict=True):
            key = (r.meter_id, r.timestamp)
            if key not in stored and key not in claimed:
                claimed.add(key)
                outcomes.append(StoreOutcome.STORED)
                continue
            kept = stored.get(key, first[key])
            same = kept == record
            outcomes.append(StoreOutcome.DUPLICATE if same else StoreOutcome.CONFLICT)
        return outcomes

    def unsigned(self, meter_ids: Sequence[str], start: int, end: int) -> list[UnsignedReading]:
        """The meters' unsigned readings with timestamps in [start, end), by time."""
        u = unsigned_readings
        query = (
            sa.select(u.c.meter_id, u.c.timestamp, u.c.interval, u.c.energy_wh, u.c.quality)
            .where(u.c.meter_id.in_(list(meter_ids)), u.c.timestamp >= start, u.c.timestamp < end)
            .order_by(u.c.timestamp, u.c.meter_id)
        )
        with self.store.connection() as connection:
            return [UnsignedReading(*row) for row in connection.execute(query)]

    def unsigned_packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' unsigned readings in [start, end) as bill packets (counter -timestamp)."""
        u = unsigned_readings
        query = sa.select(u.c.meter_id, u.c.timestamp, u.c.energy_wh, u.c.record).where(
            u.c.meter_id.in_(list(meter_ids)), u.c.timestamp >= start, u.c.timestamp < end
        )
        with self.store.connection() as connection:
            return [
                BillPacket(m, -t, t, e, bytes(record))
                for m, t, e, record in connection.execute(query)
            ]

    def unsigned_packets_by_key(self, keys: Iterable[tuple[str, int]]) -> list[BillPacket]:
        """Unsigned readings by bill key (meter, -timestamp), as bill packets."""
        wanted = [(m, -c) for m, c in keys if c < 0]
        with self.store.connection() as connection:
            found = _stored_rows(connection, wanted)
        return [BillPacket(m, -t, t, e, record) for (m, t), (e, record) in found.items()]

    # -- assignments ----------------------------------------------------------------------

    def assign(self, assignments: Iterable[Assignment]) -> int:
        """Add or replace assignments (keyed by meter and valid_from) in one transaction."""
        rows = [a._asdict() for a in assignments]
        if not rows:
            return 0
        with self.store.transaction() as connection:
            for row in rows:
                key = (meter_assignments.c.meter_id == row["meter_id"]) & (
                    meter_assignments.c.valid_from == row["valid_from"]
                )
                connection.execute(meter_assignments.delete().where(key))
            connection.execute(meter_assignments.insert(), rows)
        return len(rows)

    def assignments(self, customer_id: str | None = None) -> list[Assignment]:
        """Assignments (of one customer), by meter and start."""
        a = meter_assignments
        query = sa.select(a.c.customer_id, a.c.meter_id, a.c.valid_from, a.c.valid_to).order_by(
            a.c.meter_id, a.c.valid_from
        )
        if customer_id is not None:
            query = query.where(a.c.customer_id == customer_id)
        with self.store.connection() as connection:
            return [Assignment(*row) for row in connection.execute(query)]

    def customer_windows(self, customer_id: str, start: int, end: int) -> dict[str, list[Window]]:
        """The customer's meters in [start, end), each with the windows it is theirs.

        A meter with assignments is the customer's only inside them; a meter with none is
        its registered customer's (`meters.customer_id`) all the time.
        """
        a = meter_assignments
        ends = sa.func.coalesce(a.c.valid_to, end)
        assigned = (
            sa.select(a.c.meter_id, a.c.valid_from, ends)
            .where(a.c.customer_id == customer_id, a.c.valid_from < end, ends > start)
            .order_by(a.c.meter_id, a.c.valid_from)
        )
        unassigned = (
            sa.select(meters.c.meter_id)
            .where(meters.c.customer_id == customer_id)
            .where(~sa.exists().where(a.c.meter_id == meters.c.meter_id))
            .order_by(meters.c.meter_id)
        )
        out: dict[str, list[Window]] = defaultdict(list)
        with self.store.connection() as connection:
            for meter_id, valid_from, valid_to in connection.execute(assigned):
                out[meter_id].append(Window(max(valid_from, start), min(valid_to, end)))
            for meter_id in connection.scalars(unassigned):
                out[meter_id].append(Window(start, end))
        return dict(sorted(out.items()))

    def customers_between(self, start: int, end: int) -> dict[str, dict[str, list[Window]]]:
        """Every customer with meters in [start, end): meter -> the windows it is theirs."""
        a = meter_assignments
        ends = sa.func.coalesce(a.c.valid_to, end)
        assigned = sa.select(a.c.customer_id, a.c.meter_id, a.c.valid_from, ends).where(
            a.c.valid_from < end, ends > start
        )
        unassigned = sa.select(meters.c.customer_id, meters.c.meter_id).where(
            ~sa.exists().where(a.c.meter_id == meters.c.meter_id)
        )
        out: dict[str, dict[str, list[Window]]] = defaultdict(lambda: defaultdict(list))
        with self.store.connection() as connection:
            for customer, meter_id, valid_from, valid_to in connection.execute(assigned):
                window = Window(max(valid_from, start), min(valid_to, end))
                out[customer][meter_id].append(window)
            for customer, meter_id in connection.execute(unassigned):
                out[customer][meter_id].append(Window(start, end))
        return {c: {m: sorted(w) for m, w in sorted(ms.items())} for c, ms in sorted(out.items())}

    def reading_counts(self, meter_id: str, start: int, end: int) -> tuple[int, int]:
        """How many signed and unsigned readings the meter has with timestamps in [start, end)."""
        so, u = signed_originals, unsigned_readings
        signed = sa.select(sa.func.count()).where(
            so.c.meter_id == meter_id, so.c.timestamp >= start, so.c.timestamp < end
        )
        unsigned = sa.select(sa.func.count()).where(
            u.c.meter_id == meter_id, u.c.timestamp >= start, u.c.timestamp < end
        )
        with self.store.connection() as connection:
            return int(connection.scalar(signed) or 0), int(connection.scalar(unsigned) or 0)

    def meter_assignments(self, meter_ids: Iterable[str]) -> dict[str, list[Assignment]]:
        """Every assignment of these meters (whoever the customer), by meter."""
        a = meter_assignments
        ids = list(meter_ids)
        query = sa.select(a.c.customer_id, a.c.meter_id, a.c.valid_from, a.c.valid_to).where(
            a.c.meter_id.in_(ids)
        )
        out: dict[str, list[Assignment]] = defaultdict(list)
        with self.store.connection() as connection:
            for row in connection.execute(query.order_by(a.c.valid_from)):
                out[row[1]].append(Assignment(*row))
        return dict(out)


def _stored(connection: Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
    """The records stored under (meter, timestamp) keys."""
    return {key: record for key, (_, record) in _stored_rows(connection, keys).items()}


def _stored_rows(
    connection: Connection, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, bytes]]:
    """Energy and record stored under (meter, timestamp) keys.

    One range scan of the primary key per meter (a batch's readings of a meter are mostly one
    stretch of time): a `(meter_id, timestamp) IN (...)` list of 500 pairs made SQLite scan
    the table and cost ~0.3 s a batch once it held 100,000 readings.
    """
    u = unsigned_readings
    by_meter: dict[str, set[int]] = defaultdict(set)
    for meter_id, timestamp in keys:
        by_meter[meter_id].add(timestamp)
    out: dict[tuple[str, int], tuple[int, bytes]] = {}
    columns = [u.c.timestamp, u.c.energy_wh, u.c.record]
    for meter_id, wanted in by_meter.items():
        query = sa.select(*columns).where(
            u.c.meter_id == meter_id, u.c.timestamp.between(min(wanted), max(wanted))
        )
        for t, e, record in connection.execute(query):
            if t in wanted:
                out[(meter_id, t)] = (e, bytes(record))
    return out
