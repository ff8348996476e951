"""The operator's reads of the store: meters and their last readings, ingest, the quarantine.

`FleetStore` wraps a `Store` (same engine) and answers what the portal's fleet pages show:
the registered meters, each meter's newest reading, readings received per hour (the ingest
rate, on the head-end's clock), the ingest counters, the quarantine by reason and its newest
rows, the integrity monitors' verdicts, and the anonymized regional load. Read-only.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import sqlalchemy as sa

from meterseal.storage.schema import (
    MeterRow,
    QuarantinedPacket,
    RegionalLoad,
    measurements,
    meter_integrity,
    quarantine,
    signed_originals,
)
from meterseal.storage.store import Store


class IntegrityVerdict(NamedTuple):
    """A meter's latest integrity verdict as stored (trusted or malicious, and why)."""

    meter_id: str
    verdict: str
    reason: str
    issued_at_ms: int
    received_at: dt.datetime


class FleetStore:
    """The operator's reads over one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def not_ready(self) -> str | None:
        """Why the store cannot serve now (the /readyz reason); None when it can."""
        return self.store.not_ready()

    def meter_rows(self) -> list[MeterRow]:
        """Every registered meter, revoked included."""
        return self.store.meter_rows()

    def last_counters(self) -> dict[str, tuple[int, int]]:
        """Per meter, its highest stored counter and that reading's timestamp."""
        return self.store.last_counters()

    def counters(self) -> dict[str, int]:
        """Ingest counters: stored, duplicate and one per rejection reason."""
        return self.store.counters()

    def quarantined(self, limit: int = 100) -> list[QuarantinedPacket]:
        """The newest quarantined packets, newest first."""
        return self.store.quarantined(limit)

    def quarantine_reasons(self) -> dict[str, int]:
        """Packets kept in the quarantine now, per reason."""
        query = sa.select(quarantine.c.reason, sa.func.count()).group_by(quarantine.c.reason)
        with self.store.connection() as connection:
            return {reason: int(n) for reason, n in connection.execute(query)}

    def integrity_verdicts(self) -> list[IntegrityVerdict]:
        """Each meter's latest integrity verdict, by meter."""
        mi = meter_integrity
        query = sa.select(*[mi.c[f] for f in IntegrityVerdict._fields]).order_by(mi.c.meter_id)
        with self.store.connection() as connection:
            return [IntegrityVerdict(*row) for row in connection.execute(query)]

    def received_per_hour(self, since: float, until: float) -> dict[int, int]:
        """Readings stored per hour of arrival (head-end clock) in [since, until)."""
        so = signed_originals
        # Whole seconds, then hours, grouped in the database (not a row per reading here).
        # PostgreSQL rounds the cast where SQLite truncates: at most a half second moves.
        seconds = sa.cast(so.c.received_at, sa.BigInteger)
        width = sa.literal_column("3600", sa.BigInteger)
        hour = (seconds - seconds % width).label("hour")
        query = (
            sa.select(hour, sa.func.count())
            .where(so.c.received_at >= since, so.c.received_at < until)
            .group_by(hour)
        )
        with self.store.connection() as connection:
            return {int(h): int(n) for h, n in connection.execute(query)}

    def regional_load(self, start: int, end: int, bucket_seconds: int = 3600) -> list[RegionalLoad]:
        """Energy and reading count per region and bucket (anonymized measurements only)."""
        return self.store.regional_load(start, end, bucket_seconds)

    def latest_measurement(self) -> int | None:
        """The newest anonymized measurement's timestamp (None: there is none)."""
        query = sa.select(sa.func.max(measurements.c.timestamp))
        with self.store.connection() as connection:
            latest = connection.execute(query).scalar()
        return None if latest is None else int(latest)
