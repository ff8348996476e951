"""The administrators' change log in the store (`accounts.changes.ChangeLog`).

An append reads the newest digest and writes the next entry in one write transaction under a
lock (SQLite's write lock; a PostgreSQL advisory lock), so two portals on one store never fork
the chain. Inside `together()` (the store's `unit()`) the entry joins the transaction of the
change it records.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from meterseal.accounts.changes import GENESIS, Change, ChangeRequest, chain_digest
from meterseal.storage.schema import admin_changes
from meterseal.storage.store import Store

_CHANGES_LOCK = 0x6D657465_63686721  # any constant shared by every writer of the log


def _change(row: Any) -> Change:
    request = ChangeRequest(
        row.at, row.subject, row.roles, row.action, row.object_id, row.outcome, row.detail
    )
    return Change(int(row.id), request, bytes(row.previous), bytes(row.digest))


class ChangeStore:
    """The change log of one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, request: ChangeRequest) -> Change:
        """Append `request` after the newest entry; the stored change."""
        c = admin_changes
        with self.store.transaction() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHANGES_LOCK)))
            newest = connection.scalar(sa.select(c.c.digest).order_by(c.c.id.desc()).limit(1))
            previous = GENESIS if newest is None else bytes(newest)
            digest = chain_digest(previous, request)
            inserted = connection.execute(
                c.insert().values(
                    at=request.at,
                    subject=request.subject,
                    roles=request.roles,
                    action=request.action,
                    object_id=request.object_id,
                    outcome=request.outcome,
                    detail=request.detail,
                    previous=previous,
                    digest=digest,
                )
            )
            (key,) = inserted.inserted_primary_key or (0,)
        return Change(int(key), request, previous, digest)

    def together(self) -> AbstractContextManager[object]:
        """The store's unit: changes made to it inside commit with the entries, or neither."""
        return self.store.unit()

    def changes(self, after: int = 0, limit: int | None = None) -> list[Change]:
        """Changes with id > `after`, oldest first, at most `limit`."""
        c = admin_changes
        query = sa.select(c).where(c.c.id > after).order_by(c.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.store.connection() as connection:
            return [_change(row) for row in connection.execute(query)]
