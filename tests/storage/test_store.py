"""The store on SQLite and PostgreSQL: outcomes, quarantine, counters, atomicity, read-back."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from meterseal.acquisition.records import Rejection, StoreOutcome
from meterseal.crypto import certs
from meterseal.crypto.registry import MeterRecord
from meterseal.errors import StorageError
from meterseal.model import PhaseMeasurement, PhasorReport, phasor_from_json
from meterseal.storage import (
    REPLAYED_COUNTER,
    Store,
    StoredOriginal,
    StoreRegistry,
)
from meterseal.storage.schema import measurements, signed_originals
from tests.conftest import NOW
from tests.storage.conftest import T0, Authority, pseudonym, reading

STORED, DUPLICATE, CONFLICT = StoreOutcome.STORED, StoreOutcome.DUPLICATE, StoreOutcome.CONFLICT


def _rows(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def test_new_readings_are_stored_and_a_resend_is_an_idempotent_duplicate(store: Store) -> None:
    batch = [reading("M-001", 1), reading("M-001", 2), reading("M-003", 1)]
    assert store.save_batch(batch, []) == [STORED, STORED, STORED]
    assert store.save_batch(batch, []) == [DUPLICATE, DUPLICATE, DUPLICATE]
    assert (_rows(store, signed_originals), _rows(store, measurements)) == (3, 3)
    assert store.counters() == {"stored": 3, "duplicate": 3}
    assert store.quarantined() == []


def test_a_repeat_inside_one_batch_is_a_duplicate(store: Store) -> None:
    r = reading("M-001", 7)
    assert store.save_batch([r, r], []) == [STORED, DUPLICATE]
    assert _rows(store, measurements) == 1


def test_same_counter_with_other_bytes_is_quarantined_as_replay(store: Store) -> None:
    original, forged = reading("M-002", 5), reading("M-002", 5, energy_wh=1, variant=b"x")
    store.save_batch([original], [])
    assert store.save_batch([forged], []) == [CONFLICT]
    kept = store.originals("M-002", 0, 2**62)
    assert [o.signed_original for o in kept] == [original.signed_original]
    [entry] = store.quarantined()
    assert (entry.reason, entry.packet, entry.source) == (
        REPLAYED_COUNTER,
        forged.signed_original,
        "meter:M-002",
    )
    assert store.counters() == {"stored": 1, REPLAYED_COUNTER: 1}
    assert _rows(store, measurements) == 1


def test_a_batch_mixing_stored_and_new_keys_stores_only_the_new_ones(store: Store) -> None:
    # On SQLite the batch first goes in without RETURNING; a key already stored sends it
    # back to a savepoint and in again with RETURNING: the first try must leave no trace.
    old = [reading("M-001", 1), reading("M-002", 1)]
    store.save_batch(old, [])
    forged = reading("M-002", 1, variant=b"x")
    batch = [reading("M-003", 1), old[0], forged, reading("M-001", 2), reading("M-003", 1)]
    assert store.save_batch(batch, []) == [STORED, DUPLICATE, CONFLICT, STORED, DUPLICATE]
    assert (_rows(store, signed_originals), _rows(store, measurements)) == (4, 4)
    assert store.counters() == {"stored": 4, "duplicate": 2, REPLAYED_COUNTER: 1}
    assert [o.signed_original for o in store.originals("M-002", 0, 2**62)] == [
        old[1].signed_original
    ]


def test_conflict_inside_one_batch_keeps_the_first(store: Store) -> None:
    first, second = reading("M-001", 9), reading("M-001", 9, variant=b"other")
    assert store.save_batch([first, second, first], []) == [STORED, CONFLICT, DUPLICATE]
    assert [o.signed_original for o in store.originals("M-001", 0, 2**62)] == [
        first.signed_original
    ]


def test_rejections_are_quarantined_and_counted_per_reason(store: Store) -> None:
    rejected = [
        Rejection("bad_signature", b"p1", 1.0, "tcp:10.0.0.1:4000"),
        Rejection("malformed", b"p2", 2.0, "mqtt:meters/7"),
        Rejection("bad_signature", b"p3", 3.0, "tcp:10.0.0.2:4000"),
    ]
    assert store.save_batch([reading("M-004", 1)], rejected) == [STORED]
    assert store.counters() == {"stored": 1, "bad_signature": 2, "malformed": 1}
    newest_first = store.quarantined(limit=2)
    assert [(q.reason, q.packet, q.source) for q in newest_first] == [
        ("bad_signature", b"p3", "tcp:10.0.0.2:4000"),
        ("malformed", b"p2", "mqtt:meters/7"),
    ]
    store.save_batch([], [Rejection("malformed", b"p4", 4.0, "x")])
    assert store.counters()["malformed"] == 2


def test_a_failure_mid_batch_leaves_nothing(store: Store) -> None:
    store.save_batch([reading("M-001", 1)], [])
    before = store.counters()
    # A reading of a meter the store does not know breaks the foreign key mid-batch.
    batch = [reading("M-001", 2), reading("M-UNKNOWN", 1), reading("M-003", 2)]
    with pytest.raises(StorageError):
        store.save_batch(batch, [Rejection("malformed", b"p", 1.0, "s")])
    assert store.counters() == before
    assert (_rows(store, signed_originals), _rows(store, measurements)) == (1, 1)
    assert store.quarantined() == []


def test_a_failure_after_the_inserts_rolls_them_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_count(*_: object) -> None:
        raise sa.exc.OperationalError("UPDATE ingest_counters", {}, Exception("disk full"))

    monkeypatch.setattr(store, "_count", broken_count)
    with pytest.raises(StorageError, match="disk full"):
        store.save_batch([reading("M-001", 1)], [Rejection("malformed", b"p", 1.0, "s")])
    monkeypatch.undo()
    assert (_rows(store, signed_originals), _rows(store, measurements)) == (0, 0)
    assert store.quarantined() == []
    assert store.save_batch([reading("M-001", 1)], []) == [STORED]


def test_last_counters_give_each_meters_highest_counter_and_its_time(store: Store) -> None:
    store.save_batch([reading("M-001", 3), reading("M-001", 12), reading("M-001", 5)], [])
    store.save_batch([reading("M-003", 1, timestamp=T0 + 42)], [])
    assert store.last_counters() == {
        "M-001": (12, T0 + 12 * 900),
        "M-003": (1, T0 + 42),
    }


def test_regional_load_sums_measurements_per_region_and_hour(store: Store) -> None:
    batch = [reading(m, c, energy_wh=10 * c) for m in ("M-001", "M-002", "M-003") for c in range(8)]
    store.save_batch(batch, [])
    store.save_batch(batch[:3], [])  # duplicates must not count twice
    load = store.regional_load(T0, T0 + 7200)
    # Counters 0-3 fall in the first hour (0+10+20+30 Wh), 4-7 in the second (40+...+70 Wh).
    assert [tuple(row) for row in load] == [
        ("R01", T0, 2 * 60, 8),
        ("R02", T0, 60, 4),
        ("R01", T0 + 3600, 2 * 220, 8),
        ("R02", T0 + 3600, 220, 4),
    ]
    assert store.regional_load(T0, T0 + 3600, bucket_seconds=1800) == [
        (region, T0 + half * 1800, energy * per_region, 2 * per_region)
        for half, energy in ((0, 10), (1, 50))
        for region, per_region in (("R01", 2), ("R02", 1))
    ]
    with pytest.raises(ValueError, match="positive"):
        store.regional_load(T0, T0 + 1, bucket_seconds=0)


def test_measurements_carry_no_meter_or_customer_id(store: Store) -> None:
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("measurements")}
    assert columns == {
        "id",
        "region_id",
        "pseudonym",
        "timestamp",
        "interval",
        "energy_wh",
        "phasor",
    }
    store.save_batch([reading("M-001", 1)], [])
    with store.engine.connect() as connection:
        [row] = connection.execute(sa.select(measurements)).mappings().all()
    assert "M-001" not in repr(dict(row))
    assert row["pseudonym"] == pseudonym("M-001")


def test_phasor_is_kept_as_compact_json(store: Store) -> None:
    phase = PhaseMeasurement(230.1, 4.2, -12.5, 950.0, 210.0)
    phasor = PhasorReport((phase,), power_factor=0.97, thd=2.5, frequency=50.01, demand=1000.0)
    with_phasor = reading("M-001", 2)._replace(phasor=phasor)
    store.save_batch([reading("M-001", 1), with_phasor], [])
    with store.engine.connect() as connection:
        query = sa.select(measurements.c.phasor).order_by(measurements.c.timestamp)
        stored = list(connection.execute(query).scalars())
    assert stored == [
        None,
        {
            "phases": [[230.1, 4.2, -12.5, 950.0, 210.0]],
            "power_factor": 0.97,
            "thd": 2.5,
            "frequency": 50.01,
            "demand": 1000.0,
        },
    ]
    assert phasor_from_json(stored[1]) == phasor


def test_originals_come_back_in_time_and_counter_order(store: Store) -> None:
    late, early, same_time = (
        reading("M-002", 1, timestamp=T0 + 900),
        reading("M-002", 2, timestamp=T0),
        reading("M-002", 3, timestamp=T0 + 900),
    )
    store.save_batch([same_time, late, early, reading("M-001", 1, timestamp=T0)], [])
    got = store.originals("M-002", T0, T0 + 901)
    assert [(o.counter, o.timestamp) for o in got] == [(2, T0), (1, T0 + 900), (3, T0 + 900)]
    assert got[1] == StoredOriginal(*(getattr(late, f) for f in StoredOriginal._fields))
    assert store.originals("M-002", T0 + 1, T0 + 900) == []


def test_registry_loads_verifies_and_refreshes(store: Store, authority: Authority) -> None:
    registry = StoreRegistry(store, authority.certificate)
    record = registry.get("M-003")
    assert record is not None
    assert (record.region_id, record.revoked, len(registry)) == ("R02", False, 4)
    assert registry.get("M-404") is None
    store.revoke_meter("M-003", NOW)
    store.revoke_meter("M-003", NOW.replace(year=2030))  # the first revocation stands
    registry.refresh()
    revoked = registry.get("M-003")
    assert revoked is not None
    assert revoked.revoked_at == NOW
    assert revoked.public_key is record.public_key  # unchanged certificate: not re-parsed
    with pytest.raises(KeyError):
        store.revoke_meter("M-404", NOW)


def test_registry_leaves_out_meters_the_ca_did_not_issue(store: Store) -> None:
    rogue_ca = Authority(*certs.create_ca("rogue CA", now=NOW, rng=os.urandom))
    store.register_meters([rogue_ca.record("M-666")], now=NOW)
    registry = StoreRegistry(store, rogue_ca.certificate)
    assert registry.get("M-666") is not None
    assert registry.get("M-001") is None
    assert set(registry.rejected) == {"M-001", "M-002", "M-003", "M-004"}


def test_registry_refuses_a_certificate_filed_under_another_meter(
    store: Store, authority: Authority, fleet: list[MeterRecord]
) -> None:
    swapped = dataclasses.replace(fleet[0], meter_id="M-777")
    store.register_meters([swapped], now=NOW)
    registry = StoreRegistry(store, authority.certificate)
    assert registry.get("M-777") is None
    assert "M-001" in registry.rejected["M-777"]


def test_two_writers_store_each_reading_exactly_once(db_url: str, store: Store) -> None:
    meters, per_meter, batch_size = ("M-001", "M-002", "M-003", "M-004"), 300, 100
    everything = [reading(m, c) for c in range(per_meter) for m in meters]
    half = len(everything) // 2
    # Writer A sends the first 3/4, writer B the last 3/4: the middle half overlaps.
    shares = [everything[: half + half // 2], everything[half // 2 :][::-1]]
    outcomes: list[Counter[StoreOutcome]] = [Counter(), Counter()]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            with Store(db_url) as writer:
                start.wait()
                for b in range(0, len(shares[i]), batch_size):
                    outcomes[i].update(writer.save_batch(shares[i][b : b + batch_size], []))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = outcomes[0] + outcomes[1]
    overlap = len(shares[0]) + len(shares[1]) - len(everything)
    assert total == {STORED: len(everything), DUPLICATE: overlap}
    assert (_rows(store, signed_originals), _rows(store, measurements)) == (len(everything),) * 2
    assert store.counters() == {"stored": len(everything), "duplicate": overlap}


def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    with store, store.engine.connect() as connection:
        settings = [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys")
        ]
    assert settings == ["wal", 2, 1]  # synchronous 2 = FULL


@pytest.mark.services
def test_postgresql_commits_are_durable_whatever_the_session_default(postgres_url: str) -> None:
    url = sa.make_url(postgres_url).update_query_dict({"options": "-csynchronous_commit=off"})
    with Store(url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_a_read_only_store_reads_but_cannot_write(db_url: str, authority: Authority) -> None:
    with Store.open(db_url) as writer:
        writer.register_meters([authority.record("M-001")], now=NOW)
        writer.save_batch([reading("M-001", 1)], [])
        with Store.open_read_only(db_url) as reader:
            assert reader.counters()["stored"] == 1
            with pytest.raises(StorageError):
                reader.save_batch([reading("M-001", 2)], [])
            with pytest.raises(StorageError):
                reader.register_meters([authority.record("M-009")], now=NOW)
        assert writer.counters()["stored"] == 1


def test_a_read_only_store_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(url).engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
    with pytest.raises(StorageError, match="schema version"):
        Store.open_read_only(url)
