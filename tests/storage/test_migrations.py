"""Schema migrations: fresh and old databases end at the latest version with their data."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import Encoding

from meterseal.acquisition.records import AcceptedReading
from meterseal.crypto.registry import MeterRecord
from meterseal.errors import StorageError
from meterseal.storage import (
    LATEST_VERSION,
    MIGRATIONS,
    Store,
    current_version,
    make_engine,
    migrate,
)
from meterseal.storage.schema import (
    measurements,
    metadata,
    meters,
    quarantine,
    schema_version,
    signed_originals,
)
from tests.conftest import NOW
from tests.storage.conftest import T0, reading


def _versions(engine: sa.Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.select(schema_version.c.version).order_by("version")))


def test_steps_are_numbered_one_to_latest() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    assert LATEST_VERSION >= 2


def test_migrate_builds_a_fresh_database_and_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as connection:
        assert current_version(connection) == 0
    assert migrate(engine) == LATEST_VERSION
    assert migrate(engine) == LATEST_VERSION
    assert _versions(engine) == list(range(1, LATEST_VERSION + 1))
    engine.dispose()


def test_migrated_database_matches_the_declared_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == set(metadata.tables)
    for table in metadata.tables.values():
        reflected = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert list(reflected) == [c.name for c in table.columns], table.name
        for column in table.columns:
            got = reflected[column.name]
            declared = column.type.compile(engine.dialect)
            assert got["type"].compile(engine.dialect) == declared, (table.name, column.name)
            assert got["nullable"] == column.nullable, (table.name, column.name)
        pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert pk == [c.name for c in table.primary_key.columns], table.name
        # PostgreSQL also lists the index behind each unique constraint; those are compared below.
        indexes = {
            i["name"]: i["column_names"]
            for i in inspector.get_indexes(table.name)
            if "duplicates_constraint" not in i
        }
        assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}
        unique = {
            u["name"]: u["column_names"] for u in inspector.get_unique_constraints(table.name)
        }
        assert unique == {
            u.name: [c.name for c in u.columns]
            for u in table.constraints
            if isinstance(u, sa.UniqueConstraint)
        }, table.name
        foreign = {
            (tuple(f["constrained_columns"]), f["referred_table"])
            for f in inspector.get_foreign_keys(table.name)
        }
        assert foreign == {
            ((fk.parent.name,), fk.column.table.name) for fk in table.foreign_keys
        }, table.name
    engine.dispose()


def test_a_version_1_database_keeps_its_data_through_the_upgrade(
    db_url: str, fleet: list[MeterRecord]
) -> None:
    engine = make_engine(db_url)
    assert migrate(engine, target=1) == 1
    assert not sa.inspect(engine).has_table("ingest_counters")
    old = [reading("M-001", c) for c in range(4)]
    with engine.begin() as connection:
        _fill_v1(connection, fleet, old)
    assert migrate(engine) == LATEST_VERSION
    assert _versions(engine) == list(range(1, LATEST_VERSION + 1))
    with Store(engine) as store:
        assert [o.signed_original for o in store.originals("M-001", 0, 2**62)] == [
            r.signed_original for r in old
        ]
        assert store.regional_load(T0, T0 + 3600) == [("R01", T0, 400, 4)]
        assert [q.reason for q in store.quarantined()] == ["malformed"]
        assert store.last_counters() == {"M-001": (3, T0 + 3 * 900)}
        # The table version 2 added works alongside the old data.
        assert store.save_batch([*old, reading("M-001", 4)], []) == ["duplicate"] * 4 + ["stored"]
        assert store.counters() == {"stored": 1, "duplicate": 4}


def _fill_v1(
    connection: sa.Connection, fleet: list[MeterRecord], old: list[AcceptedReading]
) -> None:
    # Version 1 had these tables with today's columns, so today's Table objects can write them.
    connection.execute(
        meters.insert(),
        [
            {
                "meter_id": m.meter_id,
                "suite": m.suite.name,
                "certificate": m.certificate.public_bytes(Encoding.DER),
                "customer_id": m.customer_id,
                "region_id": m.region_id,
                "registered_at": NOW,
            }
            for m in fleet
        ],
    )
    connection.execute(
        signed_originals.insert(),
        [{c.name: getattr(r, c.name) for c in signed_originals.columns} for r in old],
    )
    mapped = [c.name for c in measurements.columns if c.name not in ("id", "phasor")]
    connection.execute(measurements.insert(), [{c: getattr(r, c) for c in mapped} for r in old])
    connection.execute(
        quarantine.insert().values(received_at=1.0, reason="malformed", source="t", packet=b"?")
    )


def test_a_database_newer_than_the_code_is_left_alone(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            schema_version.insert().values(
                version=LATEST_VERSION + 1, summary="future", applied_at=NOW
            )
        )
    with pytest.raises(StorageError, match="newer than this meterseal"):
        migrate(engine)
    with pytest.raises(ValueError, match="no schema version"):
        migrate(engine, target=LATEST_VERSION + 1)
    engine.dispose()


def test_two_processes_migrating_at_once_both_succeed(db_url: str) -> None:
    engines = [make_engine(db_url), make_engine(db_url)]
    start = threading.Barrier(2)
    results: list[object] = []

    def run(engine: sa.Engine) -> None:
        start.wait()
        try:
            results.append(migrate(engine))
        except Exception as exc:  # reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [LATEST_VERSION, LATEST_VERSION]
    assert _versions(engines[0]) == list(range(1, LATEST_VERSION + 1))
    for engine in engines:
        engine.dispose()


@pytest.mark.services
def test_a_missing_search_path_schema_is_created(postgres_url: str, unique_name: str) -> None:
    # meterseal.toml's store.schema: each deployment's tables in its own schema of one database.
    from meterseal.config.settings import in_schema

    url = in_schema(postgres_url, unique_name)
    admin = sa.create_engine(postgres_url)
    try:
        with Store.open(url):
            pass
        with Store.open(url):  # a second writer finds it there
            pass
        with admin.connect() as connection:
            tables = connection.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (unique_name,),
            ).scalars()
            assert {"meters", "schema_version"} <= set(tables)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {unique_name} CASCADE")
        admin.dispose()
