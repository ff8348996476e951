"""The database: sessions run statements over an OrderedKv, one transaction at a time.

Isolation: a session holds the database's lock from its transaction's first statement to its
COMMIT or ROLLBACK, so transactions run one after another (serializable, by running serially);
other sessions wait (up to `lock_timeout`). A statement's writes go to a buffer over its
transaction's buffer: a failing statement leaves nothing, and COMMIT writes the transaction as
one atomic batch of the store. One Database object per store: two processes writing the same
store are not coordinated.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType  # type: ignore[attr-defined]

from meterseal.cascadb import dml
from meterseal.cascadb.catalog import Dictionary, Table
from meterseal.cascadb.errors import NotSupportedError, OperationalError, ProgrammingError
from meterseal.cascadb.expr import Ctx, Params, Row
from meterseal.cascadb.kv import OrderedKv, Overlay
from meterseal.cascadb.query import plan_query

DIALECT = "sqlite"


@dataclass
class Result:
    """What a statement returns: column names and rows (queries), rows affected (others)."""

    columns: list[str] | None = None
    rows: list[Row] = field(default_factory=list)
    rowcount: int = -1
    plan: list[str] = field(default_factory=list)
    command: str = ""  # what PostgreSQL's CommandComplete says: SELECT, INSERT, CREATE TABLE...


def number_placeholders(sql: str, dialect: str = DIALECT) -> str:
    """`?` placeholders rewritten as `$1`, `$2`, ... in the order they appear."""
    if "?" not in sql or dialect != DIALECT:
        return sql
    tokens = [
        t
        for t in sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
        if t.token_type == TokenType.PLACEHOLDER and t.text == "?"
    ]
    for number, token in reversed(list(enumerate(tokens, start=1))):
        sql = sql[: token.start] + f"${number}" + sql[token.end + 1 :]
    return sql


def parse(sql: str, dialect: str = DIALECT) -> list[exp.Expression]:
    """The statements of `sql` in `dialect` (sqlglot's); ProgrammingError on bad syntax."""
    try:
        statements = sqlglot.parse(number_placeholders(sql, dialect), read=dialect)
    except (ParseError, TokenError) as exc:
        raise ProgrammingError(f"syntax error: {exc}") from exc
    return [s for s in statements if isinstance(s, exp.Expression)]


class Database:
    """SQL over one OrderedKv."""

    def __init__(self, kv: OrderedKv, *, lock_timeout: float = 30.0) -> None:
        self.kv = kv
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self.tables: dict[str, Table] = {}  # committed descriptors (only this object writes)
        self.plans: Plans = {}  # SELECT plans made from them, by parsed statement
        self._parsed: dict[tuple[str, str], list[exp.Expression]] = {}

    def session(self, *, autocommit: bool = True, dialect: str = DIALECT) -> Session:
        """A new session (autocommit: each statement its own transaction unless BEGIN)."""
        return Session(self, autocommit=autocommit, dialect=dialect)

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
    """A connection's state: its open transaction (a write buffer) and autocommit mode."""

    def __init__(self, database: Database, *, autocommit: bool, dialect: str = DIALECT) -> None:
        self.database = database
        self.autocommit = autocommit
        self.dialect = dialect
        self._txn: Overlay | None = None
        self._explicit = False
        self._ddl = False  # the open transaction changed the dictionary: bypass the cache

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._txn is not None

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

    def _begin(self) -> Overlay:
        if self._txn is None:
            self.database.acquire()
            self._txn = Overlay(self.database.kv)
        return self._txn

    def _statement(self, node: exp.Expression, params: Sequence[Any]) -> Result:
        if isinstance(node, exp.Transaction):
            self._begin()
            self._explicit = True
            return Result(command="BEGIN")
        if isinstance(node, exp.Commit):
            self.commit()
            return Result(command="COMMIT")
        if isinstance(node, exp.Rollback):
            self.rollback()
            return Result(command="ROLLBACK")
        txn = self._begin()
        statement = Overlay(txn)
        cache = None if self._ddl else self.database.tables
        plans = None if self._ddl else self.database.plans
        try:
            result, changed = run(node, statement, params, cache, plans)
            self._ddl |= changed
            statement.commit()
        except BaseException:
            statement.rollback()
            if self.autocommit and not self._explicit:
                self.rollback()
            raise
        if self.autocommit and not self._explicit:
            self.commit()
        return result

    def commit(self) -> None:
        """Write the transaction's buffer to the store as one batch and end it."""
        if self._txn is None:
            return
        try:
            self._txn.commit()
        finally:
            self._end()

    def rollback(self) -> None:
        """Drop the transaction's buffer and end it."""
        if self._txn is None:
            return
        self._txn.rollback()
        self._end()

    def _end(self) -> None:
        if self._ddl:
            self.database.tables.clear()
            self.database.plans.clear()
        self._txn = None
        self._explicit = False
        self._ddl = False
        self.database.release()

    def close(self) -> None:
        """Roll back what is open."""
        self.rollback()


@dataclass
class Planned:
    """A SELECT's plan kept for the next run of the same parsed statement."""

    node: exp.Expression  # held so that its id is not reused
    plan: Any
    parameters: int
    explained: list[str]


Plans = dict[int, Planned]


def run(
    node: exp.Expression,
    kv: OrderedKv,
    params: Sequence[Any],
    cache: dict[str, Table] | None = None,
    plans: Plans | None = None,
) -> tuple[Result, bool]:
    """Run one parsed statement against `kv` (a statement's buffer); whether it was DDL.

    `cache` holds committed table descriptors and `plans` SELECT plans made from them; both
    are None in a transaction that changed the dictionary.
    """
    dictionary = Dictionary(kv, cache)
    return _run(node, kv, params, dictionary, plans), dictionary.changed


def _select(
    node: exp.Expression, params: Sequence[Any], dictionary: Dictionary, plans: Plans | None
) -> Planned:
    planned = plans.get(id(node)) if plans is not None else None
    if planned is None:
        numbering = Params()
        plan = plan_query(node, None, numbering, dictionary.require)
        planned = Planned(node, plan, numbering.highest, plan.explain())
        if plans is not None:
            if len(plans) > 1024:
                plans.clear()
            plans[id(node)] = planned
    if planned.parameters > len(params):
        raise ProgrammingError(
            f"the statement has {planned.parameters} parameters, {len(params)} given"
        )
    return planned


def _run(
    node: exp.Expression,
    kv: OrderedKv,
    params: Sequence[Any],
    dictionary: Dictionary,
    plans: Plans | None = None,
) -> Result:
    numbering = Params()
    ctx = Ctx(params, kv)
    if isinstance(node, exp.Select | exp.Union | exp.Intersect | exp.Except | exp.Subquery):
        planned = _select(node, params, dictionary, plans)
        rows = list(planned.plan.rows(ctx))
        return Result(list(planned.plan.columns), rows, -1, planned.explained, "SELECT")
    if isinstance(node, exp.Create):
        kind = (node.args.get("kind") or "").upper()
        if kind == "TABLE":
            dml.create_table(node, dictionary)
        elif kind == "INDEX":
            dml.create_index(node, dictionary, kv)
        else:
            raise NotSupportedError(f"CascaDB does not support CREATE {kind}")
        return Result(command=f"CREATE {kind}")
    if isinstance(node, exp.Drop):
        dml.drop(node, dictionary, kv)
        return Result(command=f"DROP {(node.args.get('kind') or '').upper()}")
    writes = {exp.Insert: dml.insert, exp.Update: dml.update, exp.Delete: dml.delete}
    for kind_, handler in writes.items():
        if isinstance(node, kind_):
            count = handler(node, ctx, numbering, dictionary)  # type: ignore[operator]
            return Result(rowcount=count, command=node.key.upper())
    raise NotSupportedError(f"CascaDB does not support {node.key.upper()} statements")


def tables(kv: OrderedKv) -> list[Table]:
    """The tables of the store's data dictionary."""
    return Dictionary(kv).tables()
