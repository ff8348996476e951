"""`Store.unit()`: a change and its change-log entry in one transaction, on SQLite and
PostgreSQL. Both are kept, or (when anything inside raises) neither; reads inside see the unit's
own writes; another thread's writes are not drawn in."""

from __future__ import annotations

import threading

import pytest

from meterseal.accounts.changes import DONE, ChangeRequest, check_chain
from meterseal.errors import StorageError
from meterseal.storage import Store
from meterseal.storage.admin_changes import ChangeStore
from tests.conftest import NOW
from tests.storage.conftest import Authority


def _entry(meter_id: str) -> ChangeRequest:
    return ChangeRequest(1000.5, "admin", "administrator", "meter.revoke", meter_id, DONE)


def test_a_change_and_its_entry_commit_together_or_not_at_all(
    store: Store, authority: Authority
) -> None:
    log = ChangeStore(store)

    def revoke_then_fail() -> None:
        with log.together():
            store.revoke_meter("M-001", NOW)
            log.record(_entry("M-001"))
            raise StorageError("the disk is full (simulated)")

    with pytest.raises(StorageError, match="disk is full"):
        revoke_then_fail()
    assert next(r for r in store.meter_rows() if r.meter_id == "M-001").revoked_at is None
    assert log.changes() == []
    with log.together():
        store.register_meters([authority.record("M-200")], now=NOW)
        assert "M-200" in {r.meter_id for r in store.meter_rows()}  # the unit's own write
        outside: list[set[str]] = []  # another thread sees the store as committed

        def look() -> None:
            outside.append({r.meter_id for r in store.meter_rows()})

        seen = threading.Thread(target=look)
        seen.start()
        seen.join()
        assert "M-200" not in outside[0]
        log.record(_entry("M-200"))
    assert "M-200" in {r.meter_id for r in store.meter_rows()}
    assert [c.request.object_id for c in log.changes()] == ["M-200"]
    assert check_chain(log.changes()) == []
