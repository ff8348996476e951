"""The CAS's state in the store (SQLite or PostgreSQL): `CasStore` implements `CasState`.

It shares a `Store`'s engine and transactions. A nonce moves with one conditional UPDATE, so
two requests racing with one quote cannot both win. New secret versions, new rules and log
appends take the CAS lock (SQLite's write lock; a PostgreSQL advisory lock), so versions
and log indices never skip or repeat with several CAS processes on one database.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from meterseal.storage import Store
from meterseal.storage.schema import (
    cas_log,
    cas_nonces,
    cas_policies,
    cas_revocations,
    cas_secret_revocations,
    cas_secrets,
)
from meterseal.transparency.merkle import MerkleTree
from meterseal.trust.state import (
    EntryFor,
    HeadMac,
    LogRow,
    NonceRecord,
    NonceState,
    PolicyRule,
    Revocation,
    SealFor,
    SecretInfo,
    SecretRevocation,
    StoredSecret,
    next_log_row,
)

_CAS_LOCK = 0x6D657465_63617321  # any constant shared by every CAS process


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_CAS_LOCK)))


class CasStore:
    """`CasState` over one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- nonces -------------------------------------------------------------------------

    def add_nonce(self, nonce: bytes, issued_at: float, expires_at: float) -> None:
        """See `CasState`."""
        row = {"nonce": nonce, "state": NonceState.ISSUED.value}
        with self.store.transaction() as connection:
            connection.execute(
                cas_nonces.insert().values(**row, issued_at=issued_at, expires_at=expires_at)
            )

    def nonce(self, nonce: bytes) -> NonceRecord | None:
        """See `CasState`."""
        n = cas_nonces
        query = sa.select(n.c.nonce, n.c.state, n.c.issued_at, n.c.expires_at).where(
            n.c.nonce == nonce
        )
        with self.store.connection() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return NonceRecord(bytes(row[0]), NonceState(row[1]), float(row[2]), float(row[3]))

    def move_nonce(self, nonce: bytes, source: NonceState, target: NonceState) -> bool:
        """See `CasState`."""
        n = cas_nonces
        update = (
            n.update()
            .where(n.c.nonce == nonce, n.c.state == source.value)
            .values(state=target.value)
        )
        with self.store.transaction() as connection:
            return connection.execute(update).rowcount == 1

    def purge_nonces(self, before: float) -> int:
        """See `CasState`."""
        with self.store.transaction() as connection:
            result = connection.execute(cas_nonces.delete().where(cas_nonces.c.expires_at < before))
            return int(result.rowcount)

    # -- secrets ------------------------------------------------------------------------

    def add_secret(self, name: str, seal_for: SealFor, created_at: dt.datetime) -> int:
        """See `CasState`."""
        s = cas_secrets
        with self.store.transaction() as connection:
            _lock(connection)
            latest = connection.scalar(sa.select(sa.func.max(s.c.version)).where(s.c.name == name))
            version = int(latest or 0) + 1
            connection.execute(
                s.insert().values(
                    name=name, version=version, sealed=seal_for(version), created_at=created_at
                )
            )
            return version

    def latest_secret(self, name: str) -> StoredSecret | None:
        """See `CasState`."""
        s = cas_secrets
        query = (
            sa.select(s.c.name, s.c.version, s.c.sealed, s.c.created_at)
            .where(s.c.name == name)
            .order_by(s.c.version.desc())
            .limit(1)
        )
        with self.store.connection() as connection:
            row = connection.execute(query).first()
        return None if row is None else StoredSecret(row[0], row[1], bytes(row[2]), row[3])

    def secret_infos(self) -> list[SecretInfo]:
        """See `CasState`."""
        s = cas_secrets
        query = (
            sa.select(
                s.c.name, sa.func.max(s.c.version), sa.func.count(), sa.func.max(s.c.created_at)
            )
            .group_by(s.c.name)
            .order_by(s.c.name)
        )
        with self.store.connection() as connection:
            rows = connection.execute(query).all()
        return [
            SecretInfo(name, int(latest), int(count), updated)
            for name, latest, count, updated in rows
        ]

    # -- policies -----------------------------------------------------------------------

    def add_rule(self, stage: str, measurement: bytes, secret: str, added_at: dt.datetime) -> int:
        """See `CasState`."""
        p = cas_policies
        same = sa.select(p.c.id).where(
            p.c.stage == stage, p.c.measurement == measurement, p.c.secret == secret
        )
        with self.store.transaction() as connection:
            _lock(connection)
            existing = connection.scalar(same)
            if existing is not None:
                return int(existing)
            result = connection.execute(
                p.insert()
                .values(stage=stage, measurement=measurement, secret=secret, added_at=added_at)
                .returning(p.c.id)
            )
            return int(result.scalar_one())

    def rules(self) -> list[PolicyRule]:
        """See `CasState`."""
        p = cas_policies
        query = sa.select(p.c.id, p.c.stage, p.c.measurement, p.c.secret, p.c.added_at)
        with self.store.connection() as connection:
            rows = connection.execute(query.order_by(p.c.id)).all()
        return [PolicyRule(i, stage, bytes(m), secret, at) for i, stage, m, secret, at in rows]

    def add_revocation(self, measurement: bytes, revoked_at: dt.datetime, reason: str) -> bool:
        """See `CasState`."""
        r = cas_revocations
        with self.store.transaction() as connection:
            _lock(connection)
            if connection.scalar(sa.select(r.c.measurement).where(r.c.measurement == measurement)):
                return False
            connection.execute(
                r.insert().values(measurement=measurement, revoked_at=revoked_at, reason=reason)
            )
            return True

    def revocations(self) -> list[Revocation]:
        """See `CasState`."""
        r = cas_revocations
        with self.store.connection() as connection:
            rows = connection.execute(sa.select(r.c.measurement, r.c.revoked_at, r.c.reason)).all()
        return [Revocation(bytes(m), at, reason) for m, at, reason in rows]

    def add_secret_revocation(
        self, name: str, version: int, revoked_at: dt.datetime, reason: str
    ) -> bool:
        """See `CasState`."""
        w = cas_secret_revocations
        with self.store.transaction() as connection:
            _lock(connection)
            known = sa.select(w.c.version).where(w.c.name == name, w.c.version >= version)
            if connection.scalar(known) is not None:
                return False
            connection.execute(
                w.insert().values(name=name, version=version, revoked_at=revoked_at, reason=reason)
            )
            return True

    def secret_revocations(self) -> list[SecretRevocation]:
        """See `CasState`."""
        w = cas_secret_revocations
        query = sa.select(w.c.name, w.c.version, w.c.revoked_at, w.c.reason)
        with self.store.connection() as connection:
            rows = connection.execute(query.order_by(w.c.revoked_at, w.c.name)).all()
        return [SecretRevocation(n, int(v), at, reason) for n, v, at, reason in rows]

    # -- the log ------------------------------------------------------------------------

    def append_log(self, entry_for: EntryFor, head_mac: HeadMac, tree: MerkleTree) -> LogRow:
        """See `CasState`."""
        g = cas_log
        with self.store.transaction() as connection:
            _lock(connection)
            newer = sa.select(g.c.leaf_hash).where(g.c.seq >= tree.size).order_by(g.c.seq)
            for (leaf,) in connection.execute(newer):
                tree.append(bytes(leaf))
            row, entry = next_log_row(entry_for, head_mac, tree)
            connection.execute(
                g.insert().values(
                    **row._asdict(),
                    at=entry.at,
                    event=entry.event,
                    outcome=entry.outcome,
                    measurement=entry.measurement,
                )
            )
            return row

    def log_rows(self, after: int = -1, limit: int | None = None) -> list[LogRow]:
        """See `CasState`."""
        g = cas_log
        query = (
            sa.select(g.c.seq, g.c.entry, g.c.leaf_hash, g.c.root, g.c.mac)
            .where(g.c.seq > after)
            .order_by(g.c.seq)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.store.connection() as connection:
            rows = connection.execute(query).all()
        return [LogRow(int(s), bytes(e), bytes(h), bytes(r), bytes(m)) for s, e, h, r, m in rows]
