"""Stock PostgreSQL tooling against CascaDB: SQLAlchemy's postgresql+psycopg engine and meterseal's
make_engine (their first-connect queries), psql -c, and the SHOW, SET and server functions
they ask, answered as PostgreSQL's (the same outcomes from CascaDB and, marked `services`, the
real PostgreSQL)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from meterseal.storage.engine import make_engine
from tests.cascadb.pg_client import Running
from tests.cascadb.test_pg_compat import IDLE, INERROR
from tests.cascadb.test_pg_session_commands import outcomes
from tests.services import REQUIRE_ENV, services_required


def _require_psycopg() -> None:
    if importlib.util.find_spec("psycopg") is None:
        reason = "psycopg is not installed (pip install 'meterseal[headend]')"
        if services_required():
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
        pytest.skip(reason)


class _Base(DeclarativeBase):
    pass


class _Reading(_Base):
    __tablename__ = "reading"
    meter: Mapped[str] = mapped_column(primary_key=True)
    ts: Mapped[int] = mapped_column(primary_key=True)
    kwh: Mapped[int]


def _url(running: Running) -> sa.URL:
    return sa.URL.create(
        "postgresql+psycopg",
        username="mdc",
        host="127.0.0.1",
        port=running.server.port,
        database="meter",
        query={"sslmode": "disable"},
    )


def test_sqlalchemys_engine_connects_and_round_trips_through_a_session(running: Running) -> None:
    # Its first connect asked select pg_catalog.version(), which CascaDB refused with 0A000.
    _require_psycopg()
    # (its hstore lookup reads PostgreSQL's catalog, which CascaDB has not: turned off)
    engine = sa.create_engine(_url(running), use_native_hstore=False)
    try:
        _Base.metadata.create_all(engine, checkfirst=False)  # checkfirst reads the catalog
        with Session(engine) as session:
            session.add_all(
                [_Reading(meter="m-9", ts=1, kwh=3), _Reading(meter="m-9", ts=2, kwh=5)]
            )
            session.commit()
        with Session(engine) as session:
            got = session.scalars(sa.select(_Reading).order_by(_Reading.ts)).all()
            assert [(r.meter, r.ts, r.kwh) for r in got] == [("m-9", 1, 3), ("m-9", 2, 5)]
        assert engine.dialect.server_version_info == (15, 0)
        assert engine.dialect.default_schema_name == "public"
        assert engine.dialect.default_isolation_level == "READ COMMITTED"
    finally:
        engine.dispose()
    # meterseal's own engine asks SHOW synchronous_commit of each new connection too
    store = make_engine(_url(running), use_native_hstore=False)
    try:
        with store.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM reading")) == 2
            assert conn.scalar(sa.text("SHOW synchronous_commit")) == "on"
    finally:
        store.dispose()


def test_the_catalog_sqlalchemy_would_read_is_a_clear_error(running: Running) -> None:
    # SQLAlchemy's default hstore lookup reads pg_type: CascaDB says it has none, no fake row.
    _require_psycopg()
    engine = sa.create_engine(_url(running))
    try:
        with pytest.raises(sa.exc.ProgrammingError, match="pg_type"), engine.connect():
            pass
    finally:
        engine.dispose()


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_psql_c_asks_the_server_about_itself(running: Running) -> None:
    # version() and SHOW server_version failed with 0A000; a misspelt SET was taken.
    command = ["psql", running.dsn(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    queries = ["SELECT version()", "SHOW server_version", "SELECT current_user, current_database()"]
    done = subprocess.run(
        [*command, *(arg for q in queries for arg in ("-c", q))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "PostgreSQL 15.0 (CascaDB meterseal 0.1.0)",
        "15.0 (CascaDB meterseal 0.1.0)",
        "mdc|meter",
    ]
    done = subprocess.run(
        [*command, "-c", "SET synchronous_comit = off"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert 'unrecognized configuration parameter "synchronous_comit"' in done.stderr


def test_show_answers_what_clients_ask_as_postgresql(dsn: str) -> None:
    # Each but the transaction modes failed with 0A000 (SHOW of a misspelt name too).
    queries = [
        "SHOW standard_conforming_strings",
        "SHOW synchronous_commit",
        "SHOW server_encoding",
        "SHOW client_encoding",
        "SHOW datestyle",
        "SHOW integer_datetimes",
        "SHOW transaction isolation level",
        "SHOW synchronous_comit",
    ]
    assert outcomes(dsn, queries) == [
        ("SHOW standard_conforming_strings: on", IDLE),
        ("SHOW synchronous_commit: on", IDLE),
        ("SHOW server_encoding: UTF8", IDLE),
        ("SHOW client_encoding: UTF8", IDLE),
        ("SHOW DateStyle: ISO, MDY", IDLE),
        ("SHOW integer_datetimes: on", IDLE),
        ("SHOW transaction_isolation: read committed", IDLE),
        ("42704", IDLE),
    ]


def test_set_refuses_a_name_it_does_not_know_as_postgresql(dsn: str) -> None:
    # SET and RESET of any name answered SET: a misspelt setting was silently dropped.
    queries = [
        "SET synchronous_comit = off",
        "SET LOCAL nonexistent_setting TO 1",
        "RESET nonexistent_setting",
        "SET meterseal.tenant = 7",  # a dotted (custom) name is anybody's
        "SET synchronous_commit = on",
        "RESET synchronous_commit",
        "SET standard_conforming_strings = true",
        "SET server_version = '9.6'",
        "RESET server_encoding",
        "SET transaction_deferrable = maybe",
        "SET TIME ZONE 'UTC'",
        "RESET TIME ZONE",
        "SET extra_float_digits = 3",
        'SET "TimeZone" TO DEFAULT',
        "SET application_name TO 'mdc'",
        "SET synchronous_commit off",
        "BEGIN; SET nonexistent_setting = 1; COMMIT",
        "ROLLBACK",
    ]
    assert outcomes(dsn, queries) == [
        ("42704", IDLE),
        ("42704", IDLE),
        ("42704", IDLE),
        ("SET", IDLE),
        ("SET", IDLE),
        ("RESET", IDLE),
        ("SET", IDLE),
        ("55P02", IDLE),
        ("55P02", IDLE),
        ("22023", IDLE),
        ("SET", IDLE),
        ("RESET", IDLE),
        ("SET", IDLE),
        ("SET", IDLE),
        ("SET", IDLE),
        ("42601", IDLE),
        ("42704", INERROR),
        ("ROLLBACK", IDLE),
    ]


def test_the_server_functions_answer_as_postgresqls(dsn: str) -> None:
    # version(), pg_catalog.version(), current_schema() and the session's names failed (0A000).
    params = conninfo_to_dict(dsn)
    user, database = params["user"], params["dbname"]
    queries = [
        "SELECT version() LIKE 'PostgreSQL 15.%', pg_catalog.version() = version()",
        "SELECT current_schema() = current_schema",  # the real one's: the scratch schema
        f"SELECT current_user = '{user}', session_user = '{user}'",
        f"SELECT current_database() = '{database}', current_catalog = '{database}'",
    ]
    yes = [f"{_yes(query)}" for query in queries]
    assert outcomes(dsn, yes) == [
        ("SELECT 1 a,b: yes,yes", IDLE),
        ("SELECT 1 a: yes", IDLE),
        ("SELECT 1 a,b: yes,yes", IDLE),
        ("SELECT 1 a,b: yes,yes", IDLE),
    ]


def _yes(query: str) -> str:
    """`query`'s conditions each as 'yes' or 'no' in columns a, b (CascaDB's true is 1)."""
    conditions = query.removeprefix("SELECT ").split(", ")
    cases = [
        f"CASE WHEN {c} THEN 'yes' ELSE 'no' END AS {n}"
        for c, n in zip(conditions, "ab", strict=False)
    ]
    return "SELECT " + ", ".join(cases)
