"""PostgreSQL's rule for the columns of a grouped query: outside an aggregate's arguments, the
select list, ORDER BY and HAVING read a column only within an expression GROUP BY names, or
of a table whose primary key GROUP BY names (its other columns depend on the key); else
42803, as PostgreSQL's parse_agg.c answers. SQLite's dialect keeps sqlite3's bare columns
(each read from one row of its group).

A column of an outer query is a constant of the group. Subqueries are left unchecked:
PostgreSQL refuses one reading an ungrouped column of this query ("subquery uses ungrouped
column"), CascaDB answers it from the group's first row.

PostgreSQL's WHERE and HAVING take a Boolean (42804 else): CascaDB, whose values carry no
PostgreSQL type, refuses the conditions whose type is plain from the text, a number (`WHERE
1`) or a column of a number or text type (`HAVING k`); any other is read as sqlite3 reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from meterseal.cascadb.catalog import Table
from meterseal.cascadb.errors import DatatypeMismatch, GroupingError, ProgrammingError
from meterseal.cascadb.functions import agg_name
from meterseal.cascadb.scope import Scope

_SUBQUERIES = (exp.Select, exp.Subquery, exp.SetOperation)
# PostgreSQL's names of the column types sqlglot spells so (parameters dropped)
_TYPES = {
    "INT": "integer",
    "BIGINT": "bigint",
    "SMALLINT": "smallint",
    "TEXT": "text",
    "VARCHAR": "character varying",
    "DECIMAL": "numeric",
    "DOUBLE": "double precision",
}
_INT4, _INT8 = 2**31, 2**63


def require_boolean(
    node: exp.Expression, clause: str, scope: Scope, tables: Sequence[tuple[str, Table]]
) -> None:
    """DatatypeMismatch (42804, PostgreSQL's) when `node`, the condition of `clause` (WHERE,
    HAVING), is plainly no Boolean: a number, or a column of a number or text type."""
    found = _type_of(_bare(node), scope, tables)
    if found is not None:
        raise DatatypeMismatch(f"argument of {clause} must be type boolean, not type {found}")


def _type_of(node: exp.Expression, scope: Scope, tables: Sequence[tuple[str, Table]]) -> str | None:
    """PostgreSQL's type of a number or of a column of a type in _TYPES, else None."""
    negated = False
    while isinstance(node, exp.Neg | exp.Paren):
        negated ^= isinstance(node, exp.Neg)
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19:
            return "numeric"
        value = int(text)  # PostgreSQL folds the minus in: -2147483648 is an integer
        if -_INT4 <= (-value if negated else value) < _INT4:
            return "integer"
        return "bigint" if -_INT8 <= (-value if negated else value) < _INT8 else "numeric"
    position = None if negated else _own(node, scope)
    source = scope.slots[position].source if position is not None else None
    table = next((t for _, t in tables if source is not None and t.name == source[0]), None)
    if source is None or table is None:
        return None
    declared = table.columns[source[1]].declared.upper()
    return _TYPES.get(declared.split("(")[0].strip())


def check_grouped(
    terms: Sequence[exp.Expression],
    clauses: Sequence[exp.Expression],
    scope: Scope,
    tables: Sequence[tuple[str, Table]],
) -> None:
    """GroupingError (42803) naming the first column of `clauses` (select list, ORDER BY,
    HAVING, in PostgreSQL's order) that is neither grouped by `terms` nor in an aggregate's
    arguments nor of a table (`tables`: alias and table of FROM) whose primary key is grouped."""
    keys = {_key(t, scope) for t in terms}
    grouped = {p for p in (_own(_bare(t), scope) for t in terms) if p is not None}
    dependent = _dependent(grouped, scope, tables)
    for clause in clauses:
        slot = _ungrouped(clause, keys, dependent, scope)
        if slot is not None:
            raise GroupingError(
                f'column "{scope.slots[slot].table}.{_name(scope, slot)}" must appear in the '
                "GROUP BY clause or be used in an aggregate function"
            )


def _ungrouped(
    node: exp.Expression, keys: set[str], dependent: set[int], scope: Scope
) -> int | None:
    """The slot of the first column of `node` read outside the groups' keys."""
    if keys and _key(node, scope) in keys:
        return None
    if agg_name(node) is not None or isinstance(node, _SUBQUERIES):
        return None
    if isinstance(node, exp.Column):
        position = _own(node, scope)
        return None if position in dependent else position
    for child in node.iter_expressions():
        found = _ungrouped(child, keys, dependent, scope)
        if found is not None:
            return found
    return None


def _dependent(grouped: set[int], scope: Scope, tables: Sequence[tuple[str, Table]]) -> set[int]:
    """Slots of the tables whose primary key columns are all grouped: PostgreSQL's functional
    dependency (a table without one, keyed by a hidden rowid, has none)."""
    found = set(grouped)
    for alias, table in tables:
        mine = {
            p: s.source[1]
            for p, s in enumerate(scope.slots)
            if s.table == alias and s.source is not None
        }
        key = {p for p, column in mine.items() if column in table.primary}
        if table.primary and key <= grouped:
            found.update(mine)
    return found


def _name(scope: Scope, slot: int) -> str:
    found = scope.slots[slot]
    return found.declared or found.name


def _bare(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _own(node: exp.Expression, scope: Scope) -> int | None:
    """The slot of this query's row a column reads; None for anything else (an outer
    query's column, a parameter)."""
    if not isinstance(node, exp.Column) or node.name.startswith("$"):
        return None
    table = node.table.lower() if node.table else None
    try:
        depth, position, _ = scope.resolve(table, node.name.lower())
    except ProgrammingError:
        return None
    return position if depth == 0 else None


def _key(node: exp.Expression, scope: Scope) -> str:
    """`node` as text with its parentheses dropped and each column of this query's row as its
    slot, so that `t.a` matches `a` and `(a + 1)` matches `a + 1`."""
    bare = _bare(node)
    position = _own(bare, scope)
    if position is not None:
        return f"#{position}"
    copy = bare.copy()
    for paren in list(copy.find_all(exp.Paren)):
        paren.replace(paren.this)
    for column in list(copy.find_all(exp.Column)):
        if column.find_ancestor(*_SUBQUERIES) is None:
            position = _own(column, scope)
            if position is not None:
                column.replace(exp.column(f"#{position}", quoted=True))
    return copy.sql()
