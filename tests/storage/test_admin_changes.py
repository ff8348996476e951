"""The change log in the store: appended in order, chained, and a row edited in SQL is found (by
the portal's page and by `meterseal accounts changes`)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from meterseal.accounts.changes import GENESIS, ChangeRequest, check_chain
from meterseal.storage import Store
from meterseal.storage.admin_changes import ChangeStore
from meterseal.storage.schema import admin_changes
from tests.command_line import invoke


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


def test_the_accounts_changes_command_lists_and_checks_the_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store:
        made = [ChangeStore(store).record(_request(n)) for n in range(2)]
    listed = invoke(["accounts", "changes", "--store", url], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    said = " ".join(listed.output.split())
    assert "meter.revoke" in said
    assert "M1" in said
    assert f"2 changes, newest digest {made[-1].digest.hex()}: the chain holds" in said
    with Store.open(url) as store, store.transaction() as connection:
        connection.execute(sa.update(admin_changes).values(subject="someone"))
    broken = invoke(["accounts", "changes", "--store", url], env={"COLUMNS": "200"})
    assert broken.exit_code == 1
    assert f"entry {made[0].id} differs from what was recorded" in " ".join(broken.output.split())
