"""Schema v6: a customer's meters are indexed; PostgreSQL keeps bill manifests uncompressed."""

from __future__ import annotations

import sqlalchemy as sa

from meterseal.storage import make_engine, migrate


def test_meters_are_indexed_by_customer(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("meters")}
    assert indexes["ix_meters_customer_id"] == ["customer_id"]
    engine.dispose()


def test_postgres_stores_manifests_out_of_line_without_compressing_them(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        return  # SQLite never compresses
    with engine.connect() as connection:
        storage: dict[str, str] = dict(
            connection.execute(
                sa.text(
                    "SELECT attname, attstorage FROM pg_attribute "
                    "WHERE attrelid = 'bills'::regclass AND attname IN ('manifest', 'signed_bill')"
                )
            ).all()
        )
    engine.dispose()
    # 'e' = EXTERNAL: out of line, never compressed; 'x' = EXTENDED, the default for bytea.
    assert storage == {"manifest": "e", "signed_bill": "x"}
