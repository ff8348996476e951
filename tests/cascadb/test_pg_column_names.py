"""Output columns over the PostgreSQL protocol are named as PostgreSQL names them (the same
names from CascaDB and, marked `services`, the real PostgreSQL); SQLite's SQL keeps SQLite's
rule."""

from __future__ import annotations

import psycopg

from meterseal.cascadb import Database, MemoryKv
from tests.cascadb.test_pg_compat import TABLE

# (expression, PostgreSQL's name of its column): CascaDB named them by their SQL text
# (`COUNT(*)`, `1`, `LOWER(v)`), which pandas.read_sql and SQLAlchemy's rows then carry
SCALARS = [
    ("k", "k"),
    ("t.k", "k"),
    ("K", "k"),  # an unquoted name folds to lower case
    ("k AS X", "x"),
    ('k AS "X"', "X"),
    ("k AS ÄB", "Äb"),  # only A to Z fold (UTF-8): it was äb
    ("1", "?column?"),
    ("'a'", "?column?"),
    ("k + 1", "?column?"),
    ("-k", "?column?"),
    ("k % 2", "?column?"),
    ("k = 1", "?column?"),
    ("NULL", "?column?"),
    ("v || v", "?column?"),
    ("lower(v)", "lower"),
    ("UPPER(v)", "upper"),
    ("char_length(v)", "char_length"),  # as written, not as sqlglot knows it (length)
    ("substr(v, 1)", "substr"),
    ("trim(v)", "btrim"),
    ("coalesce(k, 1)", "coalesce"),
    ("nullif(k, 1)", "nullif"),
    ("greatest(k, 1)", "greatest"),
    ("position('a' in v)", "position"),
    ("k::text", "k"),  # a cast: what it casts, else its type
    ("CAST(length(v) AS TEXT)", "length"),
    ("1::integer", "int4"),
    ("CAST('1' AS pg_catalog.int4)", "int4"),  # it was pg_catalog.int4
    ("'1'::bigint", "int8"),
    ("1::numeric(10, 2)", "numeric"),
    ("CAST(1 AS double precision)", "float8"),
    ("(1)::text", "text"),
    ("(k)", "k"),
    ("CASE WHEN k = 1 THEN 'a' END", "case"),
    ("CASE WHEN k = 1 THEN 'a' ELSE v END", "v"),
    ("EXISTS (SELECT 1)", "exists"),
    ("(SELECT 1)", "?column?"),
    ("(SELECT max(k) FROM t)", "max"),
]
AGGREGATES = [
    ("count(*)", "count"),
    ("COUNT(*)", "count"),
    ("count(DISTINCT k)", "count"),
    ("sum(k)", "sum"),
    ("avg(k)", "avg"),
    ("min(k)", "min"),
    ("max(k)", "max"),
    ("string_agg(v, ',')", "string_agg"),
    ("sum(k) + 1", "?column?"),
    ("count(*) AS n", "n"),
]


def _names(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> list[str]:
    cursor = conn.execute(sql)
    assert cursor.description is not None
    return [column.name for column in cursor.description]


def test_output_columns_are_named_as_postgresql_names_them(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLE)
        for listed in (SCALARS, AGGREGATES):
            select = ", ".join(expression for expression, _ in listed)
            assert _names(conn, f"SELECT {select} FROM t") == [name for _, name in listed]
        conn.execute("INSERT INTO t VALUES (1, 'one')")
        assert _names(conn, "SELECT * FROM t") == ["k", "v"]
        assert _names(conn, "SELECT count(*) FROM t UNION SELECT 2") == ["count"]
        assert _names(conn, "SELECT 2 UNION SELECT count(*) FROM t") == ["?column?"]
        returned = "UPDATE t SET v = 'uno' RETURNING k, k + 1, lower(v), v AS w"
        assert _names(conn, returned) == ["k", "?column?", "lower", "w"]
        prepared = conn.execute("SELECT count(*), %s::text FROM t", ["x"], prepare=True)
        assert prepared.description is not None  # the extended protocol's RowDescription
        assert [c.name for c in prepared.description] == ["count", "text"]


def test_sqlites_sql_keeps_its_names() -> None:
    # the PEP 249 driver, the HTTP API and Database.execute read SQLite's SQL: SQLite's rule
    database = Database(MemoryKv())
    database.execute(TABLE)
    result = database.execute("SELECT k, count(*), lower(v), 1, v AS w FROM t")
    assert result.columns == ["k", "COUNT(*)", "LOWER(v)", "1", "w"]


def test_star_names_columns_as_postgresql_declares_them(dsn: str) -> None:
    # `*` was labelled by CascaDB's lower-case slot names ("Mixed" as mixed), and RETURNING *
    # by the names as written (Plain, which PostgreSQL declares as plain)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE u("Mixed" INTEGER PRIMARY KEY, "x y" TEXT, Plain TEXT)')
        declared = ["Mixed", "x y", "plain"]
        assert _names(conn, "INSERT INTO u VALUES (1, 'a', 'b') RETURNING *") == declared
        assert _names(conn, "SELECT * FROM u") == declared
        assert _names(conn, "SELECT u.*, 1 AS n FROM u") == [*declared, "n"]
        assert _names(conn, 'SELECT "Mixed", PLAIN FROM u') == ["Mixed", "plain"]
        assert _names(conn, "UPDATE u SET plain = 'c' RETURNING *") == declared
