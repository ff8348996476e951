"""PEP 249 (DB-API 2.0) driver: `meterseal.cascadb.connect(store)` as sqlite3.connect is used.

paramstyle is qmark (`?`); `$1`-style numbered parameters work too. A connection is one
session. With autocommit, a query is a reader: it reads what is committed and never waits for
another connection's open transaction; so are a read-only connection's transactions. Without
autocommit, a transaction lasts until commit() or rollback() and holds the database's write
lock from its first statement, a SELECT too, so that what it read stays as read until it
writes (serializable: engine.py); `read_committed=True` begins one that starts with a read as
a reader instead, until its first write (PostgreSQL's default isolation; BEGIN IMMEDIATE or
EXCLUSIVE takes the write lock at once).
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from meterseal.cascadb.engine import Database, Result, Session
from meterseal.cascadb.errors import InterfaceError, ProgrammingError
from meterseal.cascadb.kv import MemoryKv, OrderedKv

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"

_DATABASES: weakref.WeakKeyDictionary[Any, Database] = weakref.WeakKeyDictionary()


def database_of(store: OrderedKv | Database | None) -> Database:
    """The one Database of a store (made on first use), so connections share its lock."""
    if isinstance(store, Database):
        return store
    if store is None:
        return Database(MemoryKv())
    found = _DATABASES.get(store)
    if found is None:
        found = Database(store)
        _DATABASES[store] = found
    return found


def connect(
    store: OrderedKv | Database | None = None,
    *,
    autocommit: bool = False,
    read_only: bool = False,
    abort_on_error: bool = False,
    read_committed: bool = False,
) -> Connection:
    """A connection to the database over `store` (None: a new in-memory store); a read-only
    one refuses every statement but queries (OperationalError). `abort_on_error`: PostgreSQL's
    rule, a failed statement aborts the transaction (TransactionAborted until rollback).
    `read_committed`: a transaction that begins with a query holds no lock until it writes."""
    database = database_of(store)
    return Connection(
        database,
        autocommit=autocommit,
        read_only=read_only,
        abort_on_error=abort_on_error,
        read_committed=read_committed,
    )


class Connection:
    """A PEP 249 connection: one session of the database."""

    def __init__(
        self,
        database: Database,
        *,
        autocommit: bool,
        read_only: bool = False,
        abort_on_error: bool = False,
        read_committed: bool = False,
    ) -> None:
        self.database = database
        self._session: Session | None = database.session(
            autocommit=autocommit,
            read_only=read_only,
            abort_on_error=abort_on_error,
            read_committed=read_committed,
        )

    @property
    def session(self) -> Session:
        """The open session; InterfaceError once closed."""
        if self._session is None:
            raise InterfaceError("the connection is closed")
        return self._session

    @property
    def autocommit(self) -> bool:
        """Whether each statement commits by itself."""
        return self.session.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self.session.commit()
        self.session.autocommit = value

    def cursor(self) -> Cursor:
        """A new cursor."""
        return Cursor(self)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """A new cursor that ran `sql` (sqlite3's shortcut)."""
        return self.cursor().execute(sql, params)

    def commit(self) -> None:
        """Commit the open transaction (one atomic batch of the store)."""
        self.session.commit()

    def rollback(self) -> None:
        """Drop the open transaction's writes."""
        self.session.rollback()

    def close(self) -> None:
        """Roll back what is open and close."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Connection:
        """The connection itself."""
        return self

    def __exit__(self, kind: object, value: object, trace: object) -> None:
        """Commit when the block ended normally, else roll back (sqlite3's behaviour)."""
        if kind is None:
            self.commit()
        else:
            self.rollback()


Description = tuple[str, None, None, None, None, None, None]


class Cursor:
    """A PEP 249 cursor over a connection's session."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._rows: list[tuple[Any, ...]] = []
        self._at = 0
        self.description: list[Description] | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._closed = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run `sql` with `params`; a query's rows are then fetched."""
        if self._closed:
            raise InterfaceError("the cursor is closed")
        if isinstance(params, dict):
            raise ProgrammingError("CascaDB takes positional parameters (paramstyle qmark)")
        self._show(self.connection.session.execute(sql, list(params)))
        return self

    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[Any]]) -> Cursor:
        """Run `sql` once per parameter set; rowcount is the total."""
        total = 0
        for params in seq_of_params:
            self.execute(sql, params)
            total += max(self.rowcount, 0)
        self.rowcount = total
        return self

    def _show(self, result: Result) -> None:
        self._rows, self._at = result.rows, 0
        self.lastrowid = result.lastrowid
        self.rowcount = result.rowcount if result.columns is None else len(result.rows)
        self.description = (
            None
            if result.columns is None
            else [(name, None, None, None, None, None, None) for name in result.columns]
        )

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, None at the end."""
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to `size` (default arraysize) next rows."""
        count = self.arraysize if size is None else size
        found = self._rows[self._at : self._at + count]
        self._at += len(found)
        return found

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every remaining row."""
        found = self._rows[self._at :]
        self._at = len(self._rows)
        return found

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """The remaining rows."""
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        """Close the cursor."""
        self._closed = True
        self._rows = []

    def setinputsizes(self, sizes: object) -> None:
        """Accepted and ignored (PEP 249)."""

    def setoutputsize(self, size: object, column: object = None) -> None:
        """Accepted and ignored (PEP 249)."""


def Binary(value: bytes) -> bytes:
    """A binary value."""
    return bytes(value)


Date = dt.date
Time = dt.time
Timestamp = dt.datetime
STRING, BINARY, NUMBER, DATETIME, ROWID = "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID"
