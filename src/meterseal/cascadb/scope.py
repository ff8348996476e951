"""What compiled expressions share: a row, its scope of named slots, the statement's context
and parameters, and the aggregate calls a query collects (expr.py compiles against them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meterseal.cascadb import values as sv
from meterseal.cascadb.errors import ProgrammingError, UndefinedColumn

Row = tuple[Any, ...]


class SubPlan(Protocol):
    """A compiled subquery: its rows under a context."""

    def rows(self, ctx: Ctx) -> Iterator[Row]:
        """The subquery's rows."""
        ...


@dataclass(frozen=True)
class Client:
    """Who runs a statement over the PostgreSQL protocol: its user and database's names."""

    user: str
    database: str


@dataclass
class Ctx:
    """What an expression reads beside its row: parameters and the rows of outer queries."""

    params: Sequence[Any]
    kv: Any = None  # the OrderedKv the statement reads (its write buffer)
    outer: tuple[Row, ...] = ()
    memo: dict[int, Any] = field(default_factory=dict)  # uncorrelated subqueries' results
    zero_division: bool = False  # x / 0 and x % 0 raise (PostgreSQL's rule), not NULL (SQLite's)
    client: Client | None = None  # over the PostgreSQL protocol: current_user's answer

    def inner(self, row: Row) -> Ctx:
        """The context of a subquery evaluated for `row`."""
        outer = (*self.outer, row)
        return Ctx(self.params, self.kv, outer, self.memo, self.zero_division, self.client)


Fn = Callable[[Row, Ctx], Any]


@dataclass(frozen=True)
class Slot:
    """One position of a row: the table alias, the column name and its affinity."""

    table: str | None
    name: str
    affinity: str = sv.NUMERIC
    source: tuple[str, int] | None = None  # (table name, column position) when a base column
    declared: str | None = None  # a base column's name as its table declares it (`*`'s label)


@dataclass
class Scope:
    """The slots of a row and the scope of the query around it (for correlated columns)."""

    slots: list[Slot]
    outer: Scope | None = None

    def resolve(self, table: str | None, name: str) -> tuple[int, int, Slot]:
        """(depth, position, slot) of a column; depth 0 is this row, 1 the enclosing query's."""
        scope: Scope | None = self
        depth = 0
        while scope is not None:
            found = [
                i
                for i, s in enumerate(scope.slots)
                if s.name == name and (table is None or s.table == table)
            ]
            if len(found) > 1 and table is None:
                raise ProgrammingError(f"ambiguous column name: {name}")
            if found:
                return depth, found[0], scope.slots[found[0]]
            scope = scope.outer
            depth += 1
        raise UndefinedColumn(f"no such column: {table + '.' if table else ''}{name}")


@dataclass
class Aggregate:
    """One aggregate call: its function, argument (None: count(*)) and DISTINCT."""

    func: str
    arg: Fn | None
    distinct: bool = False
    sql: str = ""


@dataclass
class Params:
    """Numbers the statement's `?` placeholders in order; counts every parameter seen."""

    next: int = 0
    highest: int = 0

    def take(self, explicit: int | None) -> int:
        """The index of the next parameter (`$n`: n - 1)."""
        if explicit is None:
            explicit = self.next
            self.next += 1
        self.highest = max(self.highest, explicit + 1)
        return explicit
