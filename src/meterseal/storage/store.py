"""The head-end's durable store: signed originals, anonymized measurements, quarantine, meters.

One `Store` serves SQLite, PostgreSQL and CascaDB (cascadb_store) with the same SQLAlchemy
Core logic; only an ingest batch's bulk statements differ (`bulk.BulkStatements`). Every
method runs in its own transaction, unless its thread is inside the store's `unit()`, whose
one transaction it joins; `save_batch` returns only after its commit is durable, so the
caller may acknowledge the batch's packets then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.engine import Connection, Engine

from meterseal.acquisition.records import AcceptedReading, Rejection, StoreOutcome
from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import suite_named
from meterseal.errors import CertificateError, RejectReason, StorageError
from meterseal.storage.bulk import BulkStatements, measurement_row, original_row
from meterseal.storage.engine import begin_write, make_engine, prepare_engine
from meterseal.storage.migrations import LATEST_VERSION, current_version, migrate
from meterseal.storage.quarantine import QuarantineBudget, QuarantineLimits, prune_statements
from meterseal.storage.reach import ENGINES, StoreUnreachable, unreachable
from meterseal.storage.schema import (
    Key,
    MeterRow,
    QuarantinedPacket,
    RegionalLoad,
    StoredOriginal,
    UtcDateTime,
    ingest_counters,
    measurements,
    meter_integrity,
    meters,
    quarantine,
    schema_version,
    signed_originals,
)

log = logging.getLogger(__name__)

REPLAYED_COUNTER = RejectReason.REPLAYED_COUNTER.value


def _key(reading: AcceptedReading) -> Key:
    return (reading.meter_id, reading.counter)


def _quarantine_row(r: Rejection) -> dict[str, Any]:
    return {name: getattr(r, name) for name in ("received_at", "reason", "source", "packet")}


def _as_rejection(r: AcceptedReading) -> Rejection:
    # The signed original names meter and counter itself; `source` says where to look.
    return Rejection(REPLAYED_COUNTER, r.signed_original, r.received_at, f"meter:{r.meter_id}")


class MeterRevoked(CertificateError):
    """A registration names a revoked meter: a revoked meter stays revoked."""


def refuse_revoked(revoked: dict[str, dt.datetime]) -> MeterRevoked:
    """The refusal to register again the revoked meters `revoked` (id -> revocation time)."""
    named = ", ".join(
        f"{m} (revoked on {at:%Y-%m-%d %H:%M} UTC)" for m, at in sorted(revoked.items())
    )
    return MeterRevoked(
        f"a revoked meter stays revoked, nothing was registered: {named}; "
        "register the meter's key under a new id"
    )


class Store:
    """The repository over one SQLite, PostgreSQL or CascaDB database."""

    def __init__(
        self, target: str | sa.URL | Engine, *, quarantine: QuarantineLimits | None = None
    ) -> None:
        self.engine = prepare_engine(target) if isinstance(target, Engine) else make_engine(target)
        self.quarantine_limits = quarantine or QuarantineLimits()
        self._quarantine_budget = QuarantineBudget(self.quarantine_limits)
        # Refused packets whose bytes were not kept (`dropped`) or deleted later (`pruned`).
        self.quarantine_counts: Counter[str] = Counter()
        name = self.engine.dialect.name
        if name not in ENGINES:
            raise StorageError(f"meterseal stores on SQLite, PostgreSQL or CascaDB, not {name}")
        self._bulk = bulk = BulkStatements(name)
        self._unit = threading.local()  # the connection of this thread's `unit()`, if any
        upsert = bulk.insert(ingest_counters)
        self._add_counts = upsert.on_conflict_do_update(
            index_elements=["outcome"],
            set_={"count": ingest_counters.c.count + upsert.excluded.count},
        )
        meter_upsert = bulk.insert(meters)
        replaced = {c.name: meter_upsert.excluded[c.name] for c in meters.c}
        del replaced["registered_at"]  # the first registration time is kept
        # A revocation stands: even a registration racing a revocation cannot clear it.
        replaced["revoked_at"] = sa.func.coalesce(meters.c.revoked_at, replaced["revoked_at"])
        self._upsert_meters = meter_upsert.on_conflict_do_update(
            index_elements=["meter_id"], set_=replaced
        )

    @classmethod
    def open(
        cls, target: str | sa.URL | Engine, *, quarantine: QuarantineLimits | None = None
    ) -> Store:
        """A store on `target` after migrating its database to the latest schema."""
        store = cls(target, quarantine=quarantine)
        reason = store.unreachable()
        if reason is not None:
            store.close()
            raise reason
        migrate(store.engine)
        return store

    @classmethod
    def open_read_only(cls, target: str | sa.URL) -> Store:
        """A store that cannot write (an auditor's access); its schema must be current."""
        store = cls(make_engine(target, read_only=True))
        reason = store.unreachable()
        if reason is not None:
            store.close()
            raise reason
        with store._read() as connection:
            version = current_version(connection)
        if version != LATEST_VERSION:
            store.close()
            raise StorageError(
                f"the store is at schema version {version}, not {LATEST_VERSION}: "
                "run `meterseal serve` or another writer once to migrate it"
            )
        return store

    def unreachable(self) -> StoreUnreachable | None:
        """Why the database cannot be connected to now (one line, password hidden); else None."""
        try:
            with self.engine.connect():
                return None
        except sa.exc.SQLAlchemyError as exc:
            return unreachable(self.engine.url, exc)

    def not_ready(self) -> str | None:
        """Why the store cannot serve now (unreachable, tables gone), for /readyz; else None."""
        try:
            with self.engine.connect() as connection:
                connection.scalar(sa.select(sa.func.max(schema_version.c.version)))
        except sa.exc.SQLAlchemyError as exc:
            return unreachable(self.engine.url, exc).diagnostics()
        return None

    def close(self) -> None:
        """Release the pooled connections (also of an engine that was passed in)."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def unit(self) -> Iterator[Connection]:
        """One write transaction that every read and write of this store (and of the
        repositories sharing it) made in this thread inside it joins: committed together at
        its end, or all rolled back if anything raises. Nested units join the outer one."""
        if self._joined() is not None:
            with self._write() as connection:
                yield connection
            return
        with self._write() as connection:
            self._unit.connection = connection
            try:
                yield connection
            finally:
                self._unit.connection = None

    def _joined(self) -> Connection | None:
        connection: Connection | None = getattr(self._unit, "connection", None)
        return connection

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            joined = self._joined()
            if joined is not None:
                yield joined
                return
            with begin_write(self.engine) as connection:
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"storage failed: {getattr(exc, 'orig', None) or exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            joined = self._joined()
            if joined is not None:  # inside a unit: read what it wrote so far
                yield joined
                return
            with self.engine.connect() as connection:
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"storage failed: {getattr(exc, 'orig', None) or exc}") from exc

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction for repositories sharing this store (StorageError on failure)."""
        return self._write()

    def connection(self) -> contextlib.AbstractContextManager[Connection]:
        """A read connection for repositories sharing this store (StorageError on failure)."""
        return self._read()

    # -- ingest -------------------------------------------------------------------------

    def save_batch(
        self, accepted: Sequence[AcceptedReading], rejected: Sequence[Rejection]
    ) -> list[StoreOutcome]:
        """Store a batch in one durable transaction; one outcome per accepted reading."""
        if not accepted and not rejected:
            return []
        with self._write() as connection:
            outcomes = self._save_readings(connection, accepted)
            conflicts = [
                r for r, o in zip(accepted, outcomes, strict=True) if o is StoreOutcome.CONFLICT
            ]
            refused = [_as_rejection(r) for r in conflicts] + list(rejected)
            # Every refusal is counted below; only the budget's share keeps its bytes.
            kept = self._quarantine_budget.admit(refused) if refused else refused
            if kept:
                connection.execute(quarantine.insert(), [_quarantine_row(r) for r in kept])
            tally = Counter({o.value: n for o, n in Counter(outcomes).items()})
            tally.pop(StoreOutcome.CONFLICT.value, None)  # counted under its reason instead
            tally.update(r.reason for r in refused)
            self._count(connection, tally)
        if len(kept) < len(refused):
            self.quarantine_counts["dropped"] += len(refused) - len(kept)
        return outcomes

    def _save_readings(
        self, connection: Connection, accepted: Sequence[AcceptedReading]
    ) -> list[StoreOutcome]:
        first: dict[Key, AcceptedReading] = {}
        for reading in accepted:
            first.setdefault(_key(reading), reading)
        # Same key order in every writer, so two PostgreSQL transactions waiting on each
        # other's uncommitted keys cannot deadlock.
        ordered = [first[k] for k in sorted(first)]
        inserted: set[Key] = set()
        if ordered:
            inserted = self._bulk.insert_originals(connection, [original_row(r) for r in ordered])
        stored = self._stored_originals(connection, [k for k in first if k not in inserted])
        # Arrival order, not key order: sorted rows would tell the utility how the
        # pseudonyms in a batch rank by meter id.
        fresh = [measurement_row(r) for k, r in first.items() if k in inserted]
        if fresh:
            self._bulk.insert_measurements(connection, fresh)
        if len(inserted) == len(accepted):  # the common case: every reading new, none repeated
            return [StoreOutcome.STORED] * len(accepted)
        outcomes = []
        claimed: set[Key] = set()  # inserted keys already reported STORED once
        for reading in accepted:
            key = _key(reading)
            if key in inserted and key not in claimed:
                claimed.add(key)
                outcomes.append(StoreOutcome.STORED)
                continue
            kept = first[key].signed_original if key in inserted else stored[key]
            same = reading.signed_original == kept
            outcomes.append(StoreOutcome.DUPLICATE if same else StoreOutcome.CONFLICT)
        return outcomes

    def _stored_originals(self, connection: Connection, keys: list[Key]) -> dict[Key, bytes]:
        found: dict[Key, bytes] = {}
        if keys:
            for statement, params in self._bulk.lookups(keys):
                found.update({(m, c): blob for m, c, blob in connection.execute(statement, params)})
        return found

    def _count(self, connection: Connection, tally: Counter[str]) -> None:
        # Sorted for the same reason as the originals: a fixed lock order across writers.
        rows = [{"outcome": name, "count": tally[name]} for name in sorted(tally) if tally[name]]
        if rows:
            connection.execute(self._add_counts, rows)

    def last_counters(self) -> dict[str, tuple[int, int]]:
        """Per meter, its highest stored counter and that reading's timestamp."""
        so = signed_originals
        if self.engine.dialect.name == "cascadb":  # it reads no subquery in FROM
            from meterseal.storage.cascadb_store import last_counters

            with self._read() as connection:
                return last_counters(connection)
        latest = (
            sa.select(so.c.meter_id, sa.func.max(so.c.counter).label("counter"))
            .group_by(so.c.meter_id)
            .subquery()
        )
        query = sa.select(so.c.meter_id, so.c.counter, so.c.timestamp).join(
            latest, sa.and_(so.c.meter_id == latest.c.meter_id, so.c.counter == latest.c.counter)
        )
        with self._read() as connection:
            return {m: (c, t) for m, c, t in connection.execute(query)}

    def counters(self) -> dict[str, int]:
        """Ingest counters: stored, duplicate and one per rejection reason."""
        with self._read() as connection:
            rows = connection.execute(sa.select(ingest_counters.c.outcome, ingest_counters.c.count))
            return {outcome: int(count) for outcome, count in rows}

    # -- meters -------------------------------------------------------------------------

    def register_meters(self, records: Iterable[MeterRecord], *, now: dt.datetime) -> int:
        """Add or replace meters (their first registration time is kept); return how many.
        MeterRevoked, and nothing registered, if one of them is a revoked meter's id."""
        rows = [
            {
                "meter_id": r.meter_id,
                "suite": r.suite.name,
                "certificate": r.certificate.public_bytes(Encoding.DER),
                "customer_id": r.customer_id,
                "region_id": r.region_id,
                "registered_at": now,
                "revoked_at": r.revoked_at,
            }
            for r in records
        ]
        if rows:
            with self._write() as connection:
                # Every revoked meter (few), not an IN list as long as a fleet of parameters.
                query = sa.select(meters.c.meter_id, meters.c.revoked_at).where(
                    meters.c.revoked_at.is_not(None)
                )
                ever: dict[str, dt.datetime] = {m: at for m, at in connection.execute(query)}
                named = {str(row["meter_id"]) for row in rows}
                revoked = {m: ever[m] for m in named if m in ever}
                if revoked:
                    raise refuse_revoked(revoked)
                connection.execute(self._upsert_meters, rows)
        return len(rows)

    def revoke_meter(self, meter_id: str, now: dt.datetime) -> None:
        """Revoke a meter from `now` (an earlier revocation stands); KeyError if unknown."""
        statement = (
            meters.update()
            .where(meters.c.meter_id == meter_id)
            .values(revoked_at=sa.func.coalesce(meters.c.revoked_at, sa.literal(now, UtcDateTime)))
        )
        with self._write() as connection:
            if connection.execute(statement).rowcount == 0:
                raise KeyError(meter_id)

    def integrity_holds(self) -> dict[str, str]:
        """Meters whose integrity monitor last judged them malicious, with its reason."""
        mi = meter_integrity
        query = sa.select(mi.c.meter_id, mi.c.reason).where(mi.c.verdict == "malicious")
        with self._read() as connection:
            return {meter_id: reason for meter_id, reason in connection.execute(query)}

    def meter_rows(self) -> list[MeterRow]:
        """All meters as stored (certificates unparsed, unverified)."""
        with self._read() as connection:
            query = sa.select(*[meters.c[f] for f in MeterRow._fields])
            return [MeterRow(*row) for row in connection.execute(query)]

    # -- reading back -------------------------------------------------------------------

    def regional_load(self, start: int, end: int, bucket_seconds: int = 3600) -> list[RegionalLoad]:
        """Energy and reading count per region and bucket for timestamps in [start, end)."""
        if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int):
            raise TypeError("bucket_seconds must be an int")
        if bucket_seconds <= 0:
            raise ValueError("bucket_seconds must be positive")
        m = measurements
        # Inlined, not bound: PostgreSQL only matches the SELECT and GROUP BY expressions
        # when they are textually equal, and two bound parameters are not.
        width = sa.literal_column(str(bucket_seconds), sa.BigInteger)
        bucket = (m.c.timestamp - m.c.timestamp % width).label("bucket_start")
        query = (
            sa.select(m.c.region_id, bucket, sa.func.sum(m.c.energy_wh), sa.func.count())
            .where(m.c.timestamp >= start, m.c.timestamp < end)
            .group_by(m.c.region_id, bucket)
            .order_by(bucket, m.c.region_id)
        )
        with self._read() as connection:
            return [
                RegionalLoad(region, int(b), int(energy), int(n))
                for region, b, energy, n in connection.execute(query)
            ]

    def originals(self, meter_id: str, start: int, end: int) -> list[StoredOriginal]:
        """A meter's signed originals with timestamps in [start, end), by (timestamp, counter)."""
        so = signed_originals
        query = (
            sa.select(*[so.c[f] for f in StoredOriginal._fields])
            .where(so.c.meter_id == meter_id, so.c.timestamp >= start, so.c.timestamp < end)
            .order_by(so.c.timestamp, so.c.counter)
        )
        with self._read() as connection:
            return [StoredOriginal(*row) for row in connection.execute(query)]

    def prune_quarantine(self, now: float) -> int:
        """Delete quarantined packets past retention (`max_age`, `max_rows`); how many."""
        with self._write() as connection:
            statements = prune_statements(self.quarantine_limits, now)
            deleted = sum(connection.execute(s).rowcount for s in statements)
        self.quarantine_counts["pruned"] += deleted
        return deleted

    def quarantined(self, limit: int = 100) -> list[QuarantinedPacket]:
        """The most recently quarantined packets, newest first."""
        q = quarantine
        query = (
            sa.select(q.c.id, q.c.received_at, q.c.reason, q.c.source, q.c.packet)
            .order_by(q.c.id.desc())
            .limit(limit)
        )
        with self._read() as connection:
            return [QuarantinedPacket(*row) for row in connection.execute(query)]


class StoreRegistry:
    """A `MeterDirectory` loaded from the store; each certificate is re-verified against the CA.

    Storage is untrusted: a meter row whose certificate does not chain to the CA, names
    another meter or does not fit its suite is left out (and listed in `rejected`).
    """

    def __init__(self, store: Store, ca_certificate: x509.Certificate) -> None:
        self.store = store
        self.ca_certificate = ca_certificate
        self.rejected: dict[str, str] = {}
        self.generation = 0  # moves on whenever a refresh changes any meter
        self._known: dict[str, tuple[bytes, MeterRecord]] = {}
        self.refresh()

    def refresh(self) -> int:
        """Reload meters from the store, parsing only new or changed certificates."""
        verifier = MeterRegistry(self.ca_certificate)
        known: dict[str, tuple[bytes, MeterRecord]] = {}
        rejected: dict[str, str] = {}
        holds = self.store.integrity_holds()
        for row in self.store.meter_rows():
            try:
                record = dataclasses.replace(
                    self._record(row, verifier), integrity_hold=holds.get(row.meter_id)
                )
                known[row.meter_id] = (row.certificate, record)
            except (CertificateError, KeyError, ValueError) as exc:
                rejected[row.meter_id] = str(exc)
                log.warning("meter %s left out of the registry: %s", row.meter_id, exc)
        changed = known != self._known
        # One assignment each, so a concurrent `get` sees the old or the new directory.
        self._known, self.rejected = known, rejected
        if changed:
            self.generation += 1
        return len(known)

    def _record(self, row: MeterRow, verifier: MeterRegistry) -> MeterRecord:
        cached = self._known.get(row.meter_id)
        if (
            cached is not None
            and cached[0] == row.certificate
            and cached[1].suite.name == row.suite
        ):
            record = cached[1]
        else:
            certificate = x509.load_der_x509_certificate(row.certificate)
            record = verifier.register(
                certificate, suite_named(row.suite), row.customer_id, row.region_id
            )
            if record.meter_id != row.meter_id:
                raise CertificateError(f"certificate names meter {record.meter_id}")
        return dataclasses.replace(
            record, customer_id=row.customer_id, region_id=row.region_id, revoked_at=row.revoked_at
        )

    def get(self, meter_id: str) -> MeterRecord | None:
        """The record of `meter_id`, or None if unknown or left out."""
        entry = self._known.get(meter_id)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        return len(self._known)
