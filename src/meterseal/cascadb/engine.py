"""The database: sessions run statements over an OrderedKv, one transaction at a time.

Isolation: a writing session holds the database's lock from its transaction's first statement
to its COMMIT or ROLLBACK, so write transactions run one after another (serializable, by running
serially); other writers wait (up to `lock_timeout`). A transaction that begins as a reader
(`Session.read_ahead`, `begin_read`) holds no lock and reads committed data until its first
write makes it the writer (locks.py). A statement's writes go to a buffer over its
transaction's buffer: a failing statement leaves nothing, and COMMIT writes the transaction as
one atomic batch of the store. One Database object per store: two processes writing the same
store are not coordinated.
"""

from __future__ import annotations

import decimal
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlglot import exp

from meterseal.cascadb.catalog import Dictionary, Table
from meterseal.cascadb.errors import (
    ActiveSqlTransaction,
    DataError,
    NotSupportedError,
    NumericOverflow,
    OperationalError,
    ProgrammingError,
    ReadOnlyTransaction,
    TransactionAborted,
)
from meterseal.cascadb.executor import Plans, Result, run
from meterseal.cascadb.kv import OrderedKv, Overlay
from meterseal.cascadb.locks import ApplyLock
from meterseal.cascadb.parsing import (
    DIALECT,
    QUERIES,
    READ_COMMITTED,
    SERIAL_LEVELS,
    SERIALIZABLE,
    TAG,
    Modes,
    command_name,
    parse,
    reads_only,
    session_command,
    transaction_modes,
)
from meterseal.cascadb.scope import Client
from meterseal.cascadb.session_defaults import Defaults, Mark

__all__ = ["Database", "Result", "Session", "parse"]


class Database:
    """SQL over one OrderedKv."""

    def __init__(self, kv: OrderedKv, *, lock_timeout: float = 30.0) -> None:
        self.kv = kv
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()  # the one write transaction
        self.applying = ApplyLock(lock_timeout)  # readers against a commit's batch
        self.tables: dict[str, Table] = {}  # committed descriptors (only this object writes)
        self.plans: Plans = {}  # SELECT plans made from them, by parsed statement
        self._parsed: dict[tuple[str, str], list[exp.Expression]] = {}

    def session(
        self,
        *,
        autocommit: bool = True,
        dialect: str = DIALECT,
        read_only: bool = False,
        abort_on_error: bool | None = None,
        read_committed: bool = False,
    ) -> Session:
        """A new session (autocommit: each statement its own transaction unless BEGIN;
        read_only: only queries; abort_on_error, read_committed: see Session)."""
        return Session(
            self,
            autocommit=autocommit,
            dialect=dialect,
            read_only=read_only,
            abort_on_error=abort_on_error,
            read_committed=read_committed,
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run `sql` in a session of its own (autocommit); the last statement's result."""
        return self.session().execute(sql, params)

    def parsed(self, sql: str, dialect: str = DIALECT) -> list[exp.Expression]:
        """The parsed statements of `sql`, cached by text (planning does not change them)."""
        cached = self._parsed.get((sql, dialect))
        if cached is None:
            cached = parse(sql, dialect)
            if len(self._parsed) > 512:
                self._parsed.clear()
            self._parsed[(sql, dialect)] = cached
        return cached

    def acquire(self) -> None:
        """Take the database for one transaction; OperationalError after the timeout."""
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise OperationalError(f"the database stayed busy for {self.lock_timeout} s")

    def release(self) -> None:
        """Give the database back."""
        self._lock.release()


class Session:
    """A connection's state: its open transaction (a write buffer) and autocommit mode.

    A transaction that can only read (a statement of its own that reads, a read-only
    session's, every statement of it a query: `read_ahead`) begins as a reader, holding no
    lock. Others hold the write lock from their first statement (serializable), unless the
    session is `read_committed` (PostgreSQL's default isolation): then a transaction, BEGIN's
    too, that begins with a read is a reader until its first write.
    """

    def __init__(
        self,
        database: Database,
        *,
        autocommit: bool,
        dialect: str = DIALECT,
        read_only: bool = False,
        abort_on_error: bool | None = None,
        read_committed: bool = False,
    ) -> None:
        self.database = database
        self.autocommit = autocommit
        self.read_only = read_only
        # the modes of its transactions unless BEGIN asks others (level: read_committed)
        self.defaults = Defaults(READ_COMMITTED if read_committed else SERIALIZABLE)
        # After a failed statement, SQLite's rule goes on with the transaction (the statement
        # left nothing); PostgreSQL's refuses all but ROLLBACK. PostgreSQL's SQL, its rule.
        self.abort_on_error = dialect == "postgres" if abort_on_error is None else abort_on_error
        self.failed = False  # a statement failed in this transaction (abort_on_error only)
        # How the next transaction begins: a reader (True), a writer (False, `begin_read`),
        # or as `read_ahead` finds (None); and its isolation level when asked.
        self._read_next: bool | None = None
        self._level_next: str | None = None
        self._reader = False  # the open transaction reads committed data, holding no lock
        self._level = ""  # the open transaction's isolation level
        self._ran = False  # a statement ran in it: its level is fixed (PostgreSQL's snapshot)
        self._read_only_txn = False  # begun or set READ ONLY
        self.dialect = dialect
        self.client: Client | None = None  # who, over the PostgreSQL protocol: current_user
        self._txn: Overlay | None = None
        # Open savepoints, innermost last: each a write buffer over the one before it.
        # (and the default isolation when each began: ROLLBACK TO undoes a SET of it; and
        # whether the transaction was read only then: READ ONLY set in one ends with it)
        self._savepoints: list[tuple[str, Overlay, Mark, bool]] = []
        self._explicit = False
        self._ddl = False  # the open transaction changed the dictionary: bypass the cache

    @property
    def read_committed(self) -> bool:
        """Whether a transaction that begins with a read is a reader until its first write (the
        default isolation is below serializable: PostgreSQL's default, READ COMMITTED)."""
        return self.default_isolation not in SERIAL_LEVELS

    @read_committed.setter
    def read_committed(self, value: bool) -> None:
        self.default_isolation = READ_COMMITTED if value else SERIALIZABLE

    @property
    def default_isolation(self) -> str:
        """The isolation level of the session's transactions that BEGIN asks none of."""
        return self.defaults.now.isolation

    @default_isolation.setter
    def default_isolation(self, level: str) -> None:
        self.defaults.set(in_transaction=False, isolation=level)

    @property
    def read_only_transaction(self) -> bool:
        """Whether the open transaction is READ ONLY, else whether the next one will be."""
        return self._read_only_txn if self._txn is not None else self.defaults.now.read_only

    @property
    def isolation(self) -> str:
        """The open transaction's isolation level, else the next one's ("READ COMMITTED" for a
        transaction begun as a reader, "SERIALIZABLE" for one holding the write lock...)."""
        return self._level if self._txn is not None else self._next_level()

    def _next_level(self) -> str:
        if self._level_next is not None:
            return self._level_next
        return READ_COMMITTED if self.read_only else self.default_isolation  # always readers

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._txn is not None

    @property
    def writing(self) -> bool:
        """Whether the open transaction holds the database's write lock (not a reader)."""
        return self._txn is not None and not self._reader

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run every statement of `sql`; the last one's result."""
        result = Result()
        for statement in self.database.parsed(sql, self.dialect):
            result = self._statement(statement, params)
        return result

    def statements(self, sql: str) -> list[exp.Expression]:
        """The parsed statements of `sql` (for a caller running them one by one)."""
        return self.database.parsed(sql, self.dialect)

    def run_statement(self, statement: exp.Expression, params: Sequence[Any] = ()) -> Result:
        """Run one parsed statement in this session."""
        return self._statement(statement, params)

    def begin(self) -> None:
        """BEGIN: open a transaction block (it waits for the write transaction open)."""
        self._begin()
        self._explicit = True

    def abort(self) -> None:
        """A statement failed outside `run_statement` (its parse, its message): under the
        PostgreSQL rule an explicit transaction is aborted as by any failed statement."""
        if (
            self._txn is not None
            and self.abort_on_error
            and (self._explicit or not self.autocommit)
        ):
            self.failed = True

    def read_ahead(self, statements: Sequence[exp.Expression]) -> None:
        """Before a transaction opens: begin it as a reader if `statements`, all it will run,
        only read (`reads_only`), or, in a read-committed session, if the first one does."""
        # A session command (SET, SHOW...) neither reads nor writes the store: the others decide
        touching = [s for s in statements if session_command(s) is None]
        leading = touching[:1] if self.read_committed else touching
        self._reads_next(bool(statements) and all(map(reads_only, leading)))

    def _reads_next(self, reads: bool) -> None:
        if self._txn is None and self._read_next is None and reads:
            self._read_next = True

    def serialize(self) -> None:
        """Take the write lock now if the open transaction is a reader: what it reads from
        here on stays as read until it ends (serializable)."""
        self._write_ahead()

    def set_transaction(self, modes: Modes) -> None:
        """PostgreSQL's SET TRANSACTION in the open transaction (none open: no effect). Its
        isolation level changes only before its first query and outside a savepoint (else
        ActiveSqlTransaction, 25001, as PostgreSQL's); a level above read committed takes the
        write lock now. READ ONLY at any time, READ WRITE only before a first query."""
        if self._txn is None:
            return
        if modes.level is not None and modes.level != self._level:
            if self._ran:
                raise ActiveSqlTransaction(
                    "SET TRANSACTION ISOLATION LEVEL must be called before any query"
                )
            if self._savepoints:
                raise ActiveSqlTransaction(
                    "SET TRANSACTION ISOLATION LEVEL must not be called in a subtransaction"
                )
            self._level = modes.level
            if modes.level in SERIAL_LEVELS:
                self._write_ahead()
            elif not self._reader:  # nothing ran, nothing written: it may read unlocked
                self._reader = True
                self.database.release()
        if modes.read_only is not None:
            if self._read_only_txn and not modes.read_only and self._savepoints:
                raise ActiveSqlTransaction(
                    "cannot set transaction read-write mode inside a read-only transaction"
                )
            if self._read_only_txn and not modes.read_only and self._ran:
                raise ActiveSqlTransaction(
                    "transaction read-write mode must be set before any query"
                )
            self._read_only_txn = modes.read_only

    def begin_read(self, reading: bool = True) -> None:
        """Begin the next transaction as a reader (`reading`, read committed) or a writer
        holding the write lock from its first statement (serializable). A reader holds no
        lock, each of its statements reads what is committed then, and its first write makes
        it a writer (which waits for the write transaction open, if any)."""
        if self._txn is None:
            self._read_next = reading
            self._level_next = READ_COMMITTED if reading else SERIALIZABLE

    def _begin(self) -> Overlay:
        if self._txn is None:
            reading = bool(self._read_next)
            if not reading:
                self.database.acquire()
            self._reader, self._level = reading, self._next_level()
            self._read_next = self._level_next = None
            self._read_only_txn = self.defaults.now.read_only  # BEGIN's own modes may follow
            self._txn = Overlay(self.database.kv)
        return self._savepoints[-1][1] if self._savepoints else self._txn

    def _write_ahead(self) -> None:
        """A reader's first write: it becomes the write transaction."""
        if self._reader:
            self.database.acquire()
            self._reader = False

    def tables(self) -> list[Table]:
        """The tables as this session's transaction sees them: a read, which begins a
        transaction as a query does (a reader, outside a write transaction: no lock)."""
        opened = not self.in_transaction
        if self.read_only or self.read_committed or (self.autocommit and not self._explicit):
            self._reads_next(True)
        top = self._begin()
        self._ran = True
        with self._reading():
            found = Dictionary(top).tables()
        if opened and self.autocommit and not self._explicit:
            self.commit()
        return found

    def _savepoint(self, node: exp.Expression) -> Result | None:
        """SAVEPOINT, RELEASE [SAVEPOINT] and ROLLBACK TO [SAVEPOINT]; None for others."""
        if isinstance(node, exp.Rollback) and node.args.get("savepoint") is not None:
            name, verb = node.args["savepoint"].name, "ROLLBACK"
        elif isinstance(node, exp.Command) and str(node.this).upper() in ("SAVEPOINT", "RELEASE"):
            verb = str(node.this).upper()
            text = str(node.expression.this if node.expression is not None else "").strip()
            if verb == "RELEASE" and text.upper().startswith("SAVEPOINT "):
                text = text[len("SAVEPOINT ") :].strip()
            name = text.strip('"')
        else:
            return None
        name = name.lower()
        if verb == "SAVEPOINT":
            top = self._begin()
            self._explicit = True  # outside BEGIN, a savepoint opens the transaction
            self._savepoints.append((name, Overlay(top), self.defaults.mark(), self._read_only_txn))
            return Result(command="SAVEPOINT")
        found = [i for i, (n, *_) in enumerate(self._savepoints) if n == name]
        if not found:
            raise ProgrammingError(f"no such savepoint: {name}")
        at = found[-1]
        if verb == "RELEASE":
            while len(self._savepoints) > at:
                _, buffer, _, self._read_only_txn = self._savepoints.pop()
                buffer.commit()  # into the buffer below it
            return Result(command="RELEASE")
        del self._savepoints[at + 1 :]
        _, buffer, defaults, self._read_only_txn = self._savepoints[at]
        self.defaults.back_to(defaults)
        buffer.rollback()  # the savepoint stays, empty
        return Result(command="ROLLBACK")

    def _statement(self, node: exp.Expression, params: Sequence[Any]) -> Result:
        if isinstance(node, exp.Commit):
            if self.failed:  # PostgreSQL answers COMMIT of an aborted transaction so
                self.rollback()
                return Result(command="ROLLBACK")
            self.commit()
            return Result(command="COMMIT")
        rolling_back = isinstance(node, exp.Rollback)
        if self.failed and not rolling_back:
            raise TransactionAborted(
                "current transaction is aborted, commands ignored until end of transaction block"
            )
        if isinstance(node, exp.Transaction):  # (an aborted block's BEGIN too is refused)
            return self._begin_block(node)
        marked = self._savepoint(node)
        if marked is not None:
            self.failed = False  # only ROLLBACK TO gets here while failed
            return marked
        if isinstance(node, exp.Rollback):
            self.rollback()
            return Result(command="ROLLBACK")
        if session_command(node) is not None:  # SET, SHOW...: the PostgreSQL protocol's own
            raise NotSupportedError(f"CascaDB runs {node.this} only over its PostgreSQL protocol")
        if self.read_only and not isinstance(node, QUERIES):
            raise OperationalError(f"a read-only session cannot run {node.key.upper()}")
        if self.read_only or self.read_committed or (self.autocommit and not self._explicit):
            self.read_ahead([node])  # the statement begins its transaction (if none is open)
        statement = Overlay(self._begin())
        self._ran = True
        cache = None if self._ddl else self.database.tables
        plans = None if self._ddl else self.database.plans
        try:
            if not reads_only(node):  # inside the try: a reader that waited in vain fails too
                if self._read_only_txn:
                    raise ReadOnlyTransaction(
                        f"cannot execute {command_name(node)} in a read-only transaction"
                    )
                self._write_ahead()
            with self._reading():
                try:
                    result, changed = run(
                        node,
                        statement,
                        params,
                        cache,
                        plans,
                        postgres=self.dialect == "postgres",
                        client=self.client,
                    )
                except decimal.Overflow:  # past the context's exponent: as PostgreSQL's
                    raise NumericOverflow("value overflows numeric format") from None
                except decimal.DecimalException as exc:
                    raise DataError(f"numeric: {type(exc).__name__}") from None
            self._ddl |= changed
            statement.commit()
        except BaseException:
            statement.rollback()
            if self.autocommit and not self._explicit:
                self.rollback()
            elif self.abort_on_error:
                self.failed = True
            raise
        if self.autocommit and not self._explicit:
            self.commit()
        return result

    def _begin_block(self, node: exp.Expression) -> Result:
        """BEGIN or START TRANSACTION with its modes: a level below serializable begins a
        reader (as PostgreSQL's: BEGIN; SELECT never blocks a writer), others the writer."""
        modes = transaction_modes(node)
        opening = self._txn is None
        if not opening:  # as PostgreSQL's: a transaction is in progress, the modes are SET
            if node.args.get("modes"):  # (SQLite's BEGIN IMMEDIATE in one: nothing, as before)
                self.set_transaction(modes)
            self.begin()
            return Result(command=node.meta.get(TAG, "BEGIN"))
        asked = self._read_next, self._level_next
        if modes.level is not None or self._read_next is None:
            self._level_next = modes.level or self._next_level()
            self._read_next = self._level_next not in SERIAL_LEVELS or None
        try:
            self.begin()
        except BaseException:  # the lock not had: no transaction began, none inherits its level
            self._read_next, self._level_next = asked
            raise
        if modes.read_only is not None:  # else the session's default, as _begin set it
            self._read_only_txn = modes.read_only
        return Result(command=node.meta.get(TAG, "BEGIN"))

    def commit(self) -> None:
        """Write the transaction's buffer to the store as one batch and end it (an aborted
        transaction is rolled back instead, as PostgreSQL's COMMIT of one is)."""
        if self.failed:
            self.rollback()
            return
        if self._txn is None:
            self._read_next = self._level_next = None  # a transaction begun but never used
            return
        try:
            while self._savepoints:
                self._savepoints.pop()[1].commit()
            if self._txn.dirty or self._ddl:
                with self.database.applying.exclusive():
                    self._txn.commit()
                    self._forget_plans()
        finally:
            self.defaults.end(committed=True)  # a SET LOCAL's modes end with the transaction
            self._end()

    def rollback(self) -> None:
        """Drop the transaction's buffer and end it."""
        if self._txn is None:
            self._read_next = self._level_next = None
            return
        self._txn.rollback()
        self._forget_plans()
        self.defaults.end(committed=False)
        self._end()

    def _reading(self) -> AbstractContextManager[None]:
        """A reader's statement reads committed data: no commit may apply meanwhile."""
        return self.database.applying.shared() if self._reader else nullcontext()

    def _forget_plans(self) -> None:
        if self._ddl:  # descriptors and plans made from them may be out of date
            self.database.tables.clear()
            self.database.plans.clear()

    def _end(self) -> None:
        reader = self._reader
        self._txn = None
        self._savepoints.clear()
        self.failed = False
        self._explicit = False
        self._ddl = False
        self._reader = False
        self._ran = self._read_only_txn = False
        if not reader:
            self.database.release()

    def close(self) -> None:
        """Roll back what is open."""
        self.rollback()
