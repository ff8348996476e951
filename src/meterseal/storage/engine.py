"""Engines for the store: durable commits, SQLite's locking and WAL, PostgreSQL's pool pings.

`make_engine` opens a store URL with these settings, `prepare_engine` adds them to an engine
made elsewhere, and `begin_write` opens a transaction that takes the write lock at its start.
docs/storage.md explains each setting.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from meterseal.crypto.at_rest import create_private_file
from meterseal.storage.reach import store_url

SQLITE_BUSY_SECONDS = 30.0
SQLITE_CHECKPOINT_PAGES = 20_000
PG_PING_AFTER_IDLE = 1.0  # seconds a pooled connection may idle before it is pinged
WRITE_OPTION = "meterseal_write"


def make_engine(url: str | sa.URL, *, read_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url` with the settings the store needs (see `prepare_engine`).

    `read_only` engines cannot change the database, whatever the code using them does:
    SQLite opens the file with mode=ro, PostgreSQL makes every transaction READ ONLY, CascaDB
    refuses every statement but queries.
    """
    # Readings are personal data: keep bound values out of exception texts and logs.
    kwargs.setdefault("hide_parameters", True)
    url = store_url(url)
    connect_args = kwargs.setdefault("connect_args", {})
    if url.get_backend_name() == "sqlite":
        connect_args.setdefault("timeout", SQLITE_BUSY_SECONDS)
        if not read_only:
            _create_owner_only(url.database or "")
        if read_only and url.database:
            url = url.set(database=f"file:{url.database}", query={"mode": "ro", "uri": "true"})
    elif url.get_backend_name() == "cascadb":
        if read_only:
            url = url.update_query_dict({"mode": "ro"})
    else:
        if read_only:
            # Added to any options the URL has (a scratch schema's search_path, say).
            options = f"{url.query.get('options', '')} -c default_transaction_read_only=on"
            url = url.update_query_dict({"options": options.strip()})
    return prepare_engine(sa.create_engine(url, **kwargs))


def _create_owner_only(database: str) -> None:
    # Readings are personal data: a new database file is the owner's only (SQLite would make
    # it 0644), and SQLite gives its -wal and -shm files the database file's mode. A file that
    # cannot be created is left for SQLite to report as it always has.
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    with suppress(OSError):
        create_private_file(Path(database))


def prepare_engine(engine: Engine) -> Engine:
    """Make commits durable (SQLite and PostgreSQL), SQLite transactional and CascaDB's reading
    transactions lock-free; idempotent."""
    name = engine.dialect.name
    if name == "sqlite" and not sa.event.contains(engine, "connect", _on_sqlite_connect):
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
        engine.dispose()  # pooled connections predate the connect hook
    elif name == "cascadb" and not sa.event.contains(engine, "begin", _on_cascadb_begin):
        sa.event.listen(engine, "begin", _on_cascadb_begin)
    elif name == "postgresql" and not sa.event.contains(engine, "connect", _on_pg_connect):
        sa.event.listen(engine, "connect", _on_pg_connect)
        sa.event.listen(engine, "checkin", _on_checkin)
        sa.event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect))
        engine.dispose()
    return engine


def _on_checkin(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(
    dialect: sa.Dialect, dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any
) -> None:
    # pool_pre_ping, but only for a connection idle for PG_PING_AFTER_IDLE: a ping is a round
    # trip (~0.3 ms here) on every checkout, a bill makes two. A server restart within that
    # second fails one transaction, which invalidates the pool like any disconnect.
    checked_in = record.info.get("checked_in_at")
    if checked_in is not None and time.monotonic() - checked_in < PG_PING_AFTER_IDLE:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as exc:  # whatever the driver raises: the pool replaces the connection
        raise sa.exc.DisconnectionError("the server does not answer a ping") from exc


def _on_pg_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # With synchronous_commit=off a crash can lose commits we have acknowledged; any other
    # setting (local, on, remote_write, remote_apply) flushes at least the local WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("SHOW synchronous_commit")
    row = cursor.fetchone()
    if row is not None and row[0] == "off":
        cursor.execute("SET synchronous_commit = on")
    cursor.close()
    dbapi_connection.commit()


def _on_sqlite_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling skips BEGIN before DDL and SELECT; turn it off
    # and let `_on_sqlite_begin` emit BEGIN, so every SQLAlchemy transaction is a real one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    _enable_wal(cursor)
    # FULL: each commit fsyncs the WAL, so an acknowledged packet survives a power cut
    # (NORMAL may lose the last commits then, and we acknowledge right after commit).
    cursor.execute("PRAGMA synchronous=FULL")
    # A batch of 500 meters dirties ~1000 index pages, the default checkpoint threshold, so
    # SQLite would checkpoint after every commit; 20000 pages (80 MB) let pages that change
    # in many commits reach the database file once. Steady-state ingest gains about 40 %.
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enable_wal(cursor: Any) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "locked" at
    # once instead of waiting for the busy timeout when another connection opens it too.
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _on_sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock at BEGIN: a deferred transaction that reads first could
    # fail with SQLITE_BUSY at its first write instead of waiting for the busy timeout.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _on_cascadb_begin(connection: Connection) -> None:
    # A writer takes CascaDB's one write lock at its first statement, a read too (writers run
    # one at a time, from their first statement to their end). Other transactions get the
    # connection's isolation: read committed unless asked otherwise, so a reading one reads
    # what is committed, holding no lock, and never waits for an open write transaction.
    if connection.get_execution_options().get(WRITE_OPTION, False):
        driver = connection.connection.driver_connection
        driver.session.begin_read(False)  # type: ignore[union-attr]


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite: BEGIN IMMEDIATE); commits on success, else rolls back."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        yield connection
