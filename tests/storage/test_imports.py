"""Unsigned readings and customer-meter assignments in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from meterseal.acquisition.records import StoreOutcome
from meterseal.billing.unsigned import UnsignedReading
from meterseal.storage import Store
from meterseal.storage.imports import Assignment, ImportStore, Window
from tests.conftest import NOW
from tests.storage.conftest import Authority

DAY = 86_400
T0 = 1_790_812_800  # 2026-10-01T00:00:00Z


def test_windows_follow_assignments_and_fall_back_to_the_registry(
    db_url: str, authority: Authority
) -> None:
    with Store.open(db_url) as store:
        store.register_meters([authority.record(m) for m in ("M-1", "M-2", "M-3")], now=NOW)
        imports = ImportStore(store)
        imports.assign(
            [
                Assignment("ALICE", "M-1", T0, T0 + 15 * DAY),
                Assignment("BOB", "M-1", T0 + 15 * DAY, None),
                Assignment("BOB", "M-2", T0 - 100 * DAY, None),
            ]
        )
        start, end = T0, T0 + 30 * DAY
        assert imports.customer_windows("ALICE", start, end) == {"M-1": [Window(T0, T0 + 15 * DAY)]}
        assert imports.customer_windows("BOB", start, end) == {
            "M-1": [Window(T0 + 15 * DAY, end)],
            "M-2": [Window(start, end)],
        }
        everyone = imports.customers_between(start, end)
        assert everyone["CUST-M-3"] == {"M-3": [Window(start, end)]}  # never assigned
        assert "CUST-M-1" not in everyone  # assigned meters follow their assignments only
        # Before ALICE moved in, M-1 was nobody's; M-2 was already BOB's.
        assert imports.customer_windows("ALICE", T0 - 10 * DAY, T0) == {}
        assert imports.customers_between(T0 - 10 * DAY, T0)["BOB"] == {
            "M-2": [Window(T0 - 10 * DAY, T0)]
        }


def test_unsigned_readings_store_once_and_count(db_url: str, authority: Authority) -> None:
    with Store.open(db_url) as store:
        store.register_meters([authority.record("M-1")], now=NOW)
        imports = ImportStore(store)
        now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        readings = [UnsignedReading("M-1", T0 + 900 * i, 900, i) for i in range(700)]
        first = imports.save_unsigned(readings, source="test", now=now)
        assert set(first) == {StoreOutcome.STORED}
        again = imports.save_unsigned(readings[::-1], source="test", now=now)
        assert set(again) == {StoreOutcome.DUPLICATE}
        changed = imports.save_unsigned([readings[5]._replace(energy_wh=99)], source="t", now=now)
        assert changed == [StoreOutcome.CONFLICT]
        assert imports.reading_counts("M-1", T0, T0 + 900 * 100) == (0, 100)
        packets = imports.unsigned_packets_by_key([("M-1", -(T0 + 900 * 5))])
        assert [(p.counter, p.energy_wh) for p in packets] == [(-(T0 + 4500), 5)]
