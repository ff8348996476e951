"""The change log in the store: appended in order, chained, and a row edited in SQL is found."""

from __future__ import annotations

import sqlalchemy as sa

from meterseal.accounts.changes import GENESIS, ChangeRequest, check_chain
from meterseal.storage import Store
from meterseal.storage.admin_changes import ChangeStore
from meterseal.storage.schema import admin_changes


def _request(n: int) -> ChangeRequest:
    return ChangeRequest(1000.5 + n, "admin", "administrator", "meter.revoke", f"M{n}", "done")


def test_changes_are_chained_in_order_and_an_edit_is_found(store: Store) -> None:
    log = ChangeStore(store)
    made = [log.record(_request(n)) for n in range(3)]
    stored = log.changes()
    assert stored == made
    assert [c.request for c in stored] == [_request(n) for n in range(3)]
    assert stored[0].previous == GENESIS
    assert check_chain(stored) == []
    assert log.changes(after=stored[0].id, limit=1) == [stored[1]]
    with store.transaction() as connection:
        connection.execute(
            sa.update(admin_changes)
            .where(admin_changes.c.id == stored[1].id)
            .values(outcome="refused: nothing happened")
        )
    assert check_chain(log.changes()) == [f"entry {stored[1].id} differs from what was recorded"]
