"""The store on CascaDB: SQLAlchemy's SQLite dialect speaking SQL to CascaDB's PEP 249 driver.

`cascadb:///DIR` is CascaDB in this process on the secure KVS over local directories (the
KVS's embedded default): DIR/node-0 holds the sealed blobs, DIR/catalog the sealed manifests,
DIR/master.key the secret the bucket keys derive from (0600, encrypted under $MS_PASSPHRASE
when set) and DIR/lock the flock that keeps a second process out (one CascaDB per store).

CascaDB parses SQLite's SQL, so the `Store` runs its SQLite statements unchanged: multi-row
INSERT … ON CONFLICT DO NOTHING, RETURNING, savepoints and upserts. What differs lives here:
no PRAGMAs (reflection reads CascaDB's data dictionary instead of sqlite_master), and the
isolation levels are CascaDB's: READ COMMITTED by default (a transaction that begins with a
read holds no lock until its first write), SERIALIZABLE or REPEATABLE READ (the write lock from
the first statement: write transactions run serially, engine.py).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite.base import SQLiteDialect, SQLiteTypeCompiler
from sqlalchemy.engine import URL, Connection
from sqlalchemy.engine.interfaces import DBAPIConnection, ReflectedColumn
from sqlalchemy.util import immutabledict

import meterseal.cascadb as cascadb
from meterseal.cascadb.catalog import Table
from meterseal.cascadb.engine import Database, Session
from meterseal.cascadb.kvs_adapter import KvsOrderedKv, LoopThread
from meterseal.crypto.at_rest import create_private_file, ensure_secret_file
from meterseal.errors import StorageError
from meterseal.kvs.nodes import LocalDirCatalog, LocalDirNode
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import ObjectStore
from meterseal.storage.schema import signed_originals

BUCKET = "cascadb"
PASSPHRASE_ENV = "MS_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret
MASTER_BYTES = 32

# SQLAlchemy's SQLite dialect reads the driver's SQLite version to decide what SQL it may
# write; CascaDB parses RETURNING and multi-row VALUES, which SQLite has had since 3.35.
_DRIVER = types.SimpleNamespace(
    **{name: getattr(cascadb, name) for name in cascadb.__all__},
    sqlite_version_info=(3, 45, 0),
)


@dataclass
class _Opened:
    """One embedded store of this process: its database, the flock file kept open."""

    database: Database
    lock_file: Any


_LOOP: LoopThread | None = None
_OPEN: dict[Path, _Opened] = {}
_OPENING = threading.Lock()


def _loop() -> LoopThread:
    global _LOOP
    if _LOOP is None:
        _LOOP = LoopThread()  # one thread runs every embedded store's KVS coroutines
    return _LOOP


def open_embedded(directory: Path) -> Database:
    """The CascaDB on the secure KVS in `directory` (created on first use), one per process."""
    directory = directory.resolve()
    with _OPENING:
        opened = _OPEN.get(directory)
        if opened is None:
            opened = _OPEN[directory] = _open(directory)
        return opened.database


def close_embedded(directory: Path) -> None:
    """Forget the embedded store in `directory` and release its lock (its engines disposed)."""
    with _OPENING:
        opened = _OPEN.pop(directory.resolve(), None)
    if opened is not None:
        opened.lock_file.close()


def _open(directory: Path) -> _Opened:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = directory / "lock"
        create_private_file(lock_path)
        lock_file = lock_path.open("rb")
    except OSError as exc:
        raise StorageError(f"cannot open the CascaDB store in {directory}: {exc}") from exc
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        raise StorageError(
            f"another process has the CascaDB store in {directory} open: CascaDB keeps its "
            "lock and data dictionary in one process (serve it to share it)"
        ) from None
    passphrase = os.environ.get(PASSPHRASE_ENV, "").encode() or None
    master = ensure_secret_file(
        directory / "master.key", lambda: os.urandom(MASTER_BYTES), passphrase
    )
    store = ObjectStore(
        [LocalDirNode("node-0", directory / "node-0")],
        LocalDirCatalog(directory / "catalog"),
        lambda bucket: derive_bucket_key(master, bucket),
        clock=time.time,
        rng=os.urandom,
    )
    return _Opened(Database(KvsOrderedKv(store, BUCKET, _loop())), lock_file)


def _reflected(table: Table) -> list[ReflectedColumn]:
    return [
        {
            "name": c.name,
            "type": _type_of(c.declared),
            "nullable": not c.not_null and i not in table.primary,
            "default": None if c.default is None else repr(c.default),
            "primary_key": table.primary.index(i) + 1 if i in table.primary else 0,
        }  # type: ignore[typeddict-unknown-key]
        for i, c in enumerate(table.columns)
    ]


# CascaDB keeps a column's type in sqlglot's generic spelling; these are SQLite's names.
_SQLITE_NAMES = {"VARBINARY": "BLOB", "INT": "INTEGER"}


def _type_of(declared: str) -> Any:
    # SQLite's reading of a declared type name (VARCHAR(64) -> VARCHAR(length=64)).
    name, paren, rest = declared.partition("(")
    spelled = _SQLITE_NAMES.get(name.strip().upper(), name) + paren + rest
    return SQLiteDialect()._resolve_type_affinity(spelled)  # type: ignore[no-untyped-call]


def last_counters(connection: Connection) -> dict[str, tuple[int, int]]:
    """`Store.last_counters` on CascaDB, which reads no subquery in FROM: each meter's highest
    counter, then that reading's time (a get each)."""
    so = signed_originals
    highest = sa.select(so.c.meter_id, sa.func.max(so.c.counter)).group_by(so.c.meter_id)
    at = sa.select(so.c.timestamp).where(
        so.c.meter_id == sa.bindparam("m"), so.c.counter == sa.bindparam("c")
    )
    found = connection.execute(highest).all()
    return {m: (c, connection.execute(at, {"m": m, "c": c}).scalar_one()) for m, c in found}


def _session(dbapi_connection: Any) -> Session:
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    assert isinstance(driver, cascadb.Connection)
    return driver.session


class _NativeDateTime(sa.DateTime):
    """Datetimes go to CascaDB and come back as datetime objects (its TIMESTAMP values)."""

    def bind_processor(self, dialect: sa.Dialect) -> None:
        """As they are."""
        return None

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> None:
        """As they are."""
        return None


class CascadbTypeCompiler(SQLiteTypeCompiler):
    """SQLite's type names, but JSON as TEXT: CascaDB would give a JSON column NUMERIC
    affinity, turning the text '5' into the number 5 (SQLite keeps JSON as text)."""

    def visit_JSON(self, type_: Any, **kw: Any) -> str:
        """TEXT."""
        return "TEXT"


class CascadbDialect(SQLiteDialect):
    """SQLAlchemy's SQLite dialect over CascaDB's driver (`cascadb:///DIR`)."""

    name = "cascadb"
    driver = "cascadb"
    supports_statement_cache = True
    supports_native_decimal = True
    default_paramstyle = "qmark"
    type_compiler_cls = CascadbTypeCompiler
    colspecs = immutabledict({**SQLiteDialect.colspecs, sa.DateTime: _NativeDateTime})
    # What a connection's transactions get (Session.isolation): read committed, or the write
    # lock from the first statement (serial: both levels above read committed)
    _isolation_lookup = immutabledict(
        {"READ COMMITTED": 0, "REPEATABLE READ": 1, "SERIALIZABLE": 1}
    )

    @classmethod
    def import_dbapi(cls) -> Any:
        """CascaDB's PEP 249 module (with the SQLite version the dialect asks for)."""
        return _DRIVER

    def create_connect_args(self, url: URL) -> Any:
        """The store's directory from `cascadb:///DIR` (`?mode=ro`: read-only connections)."""
        if not url.database:
            raise sa.exc.ArgumentError("a CascaDB store URL names a directory: cascadb:///DIR")
        return [], {"directory": url.database, "read_only": url.query.get("mode") == "ro"}

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """A driver connection to the embedded store (opened on first use)."""
        database = open_embedded(Path(cparams["directory"]))
        read_only = bool(cparams.get("read_only"))
        return cascadb.connect(database, read_only=read_only, read_committed=True)

    def on_connect(self) -> Callable[[DBAPIConnection], None] | None:
        """Nothing to set on a new connection (SQLite's PRAGMAs do not apply)."""
        return None

    def _get_server_version_info(self, connection: Connection) -> tuple[int, ...]:
        return tuple(_DRIVER.sqlite_version_info)

    def get_isolation_level(self, dbapi_connection: DBAPIConnection) -> Any:
        """The isolation level of the connection's open transaction, else of its next one."""
        return _session(dbapi_connection).isolation

    def set_isolation_level(self, dbapi_connection: DBAPIConnection, level: Any) -> None:
        """The level of the connection's next transactions (SQLAlchemy checks the name)."""
        _session(dbapi_connection).default_isolation = level

    def get_default_isolation_level(self, dbapi_conn: DBAPIConnection) -> Any:
        """What a new connection's transactions get: READ COMMITTED (PostgreSQL's default)."""
        return _session(dbapi_conn).isolation

    def do_ping(self, dbapi_connection: DBAPIConnection) -> bool:
        """In process: nothing to ping."""
        return True

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        """An in-process store does not disconnect."""
        return False

    # -- reflection: CascaDB's data dictionary, as the open transaction sees it --------

    def _tables(self, connection: Connection) -> dict[str, Table]:
        return {t.name: t for t in _session(connection.connection).tables()}

    def _table(self, connection: Connection, name: str) -> Table:
        found = self._tables(connection).get(name)
        if found is None:
            raise sa.exc.NoSuchTableError(name)
        return found

    def has_table(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> bool:
        """Whether the dictionary has `table_name`."""
        return table_name in self._tables(connection)

    def get_table_names(
        self, connection: Any, schema: Any = None, sqlite_include_internal: Any = False, **kw: Any
    ) -> Any:
        """The dictionary's tables, by name."""
        return sorted(self._tables(connection))

    def get_view_names(
        self, connection: Any, schema: Any = None, sqlite_include_internal: Any = False, **kw: Any
    ) -> Any:
        """CascaDB has no views."""
        return []

    def get_columns(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedColumn]:
        """The columns of `table_name` as declared."""
        return _reflected(self._table(connection, table_name))

    def get_pk_constraint(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        """The primary key's columns (CascaDB keeps no constraint names)."""
        table = self._table(connection, table_name)
        return {"constrained_columns": [table.columns[i].name for i in table.primary], "name": None}

    def get_indexes(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        """The indexes made by CREATE INDEX (get_unique_constraints lists the others)."""
        table = self._table(connection, table_name)
        return [
            {
                "name": i.name,
                "column_names": [table.columns[c].name for c in i.columns],
                "unique": i.unique,
            }
            for i in table.indexes
            if not i.constraint
        ]

    def get_foreign_keys(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        """The foreign keys, referring to their parents' columns."""
        table = self._table(connection, table_name)
        return [
            {
                "name": None,
                "constrained_columns": [table.columns[c].name for c in f.columns],
                "referred_schema": None,
                "referred_table": f.parent,
                "referred_columns": list(f.parent_columns),
                "options": {},
            }
            for f in table.foreign
        ]

    def get_unique_constraints(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        """The UNIQUE constraints of CREATE TABLE (kept as unique indexes of their name)."""
        table = self._table(connection, table_name)
        return [
            {"name": i.name, "column_names": [table.columns[c].name for c in i.columns]}
            for i in table.indexes
            if i.constraint
        ]

    def get_check_constraints(
        self, connection: Connection, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        """None: CascaDB has no CHECK constraints."""
        return []
