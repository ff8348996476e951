"""A query's plan: FROM/WHERE (select.py), then GROUP BY/HAVING, projection, DISTINCT, ORDER BY,
LIMIT/OFFSET; UNION/INTERSECT/EXCEPT of such plans."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.aggregate import grouped
from meterseal.cascadb.errors import NotSupportedError, ProgrammingError, UndefinedTable
from meterseal.cascadb.expr import Aggregate, Compiler, Ctx, Fn, Params, Row, Scope
from meterseal.cascadb.grouping import check_grouped, require_boolean
from meterseal.cascadb.labels import declared, postgres_name, sqlite_name
from meterseal.cascadb.positions import (
    group_terms,
    has_aggregate,
    output_position,
    postgres,
    refuse_distinct_on,
)
from meterseal.cascadb.result_types import compound_types, postgres_type
from meterseal.cascadb.select import From, Lookup, plan_from

Order = tuple[Fn | int, bool]  # (expression over the input row, or output position; descending)


@dataclass
class Query:
    """A planned SELECT: `rows(ctx)` yields its output rows, `columns` names them (by SQLite's
    rule; `labels`, by PostgreSQL's: labels.py), `types` tells the PostgreSQL types its
    expressions decide (result_types.py)."""

    columns: list[str]
    labels: list[str]
    types: list[int | None]
    source: From | None
    group: list[Fn] | None
    aggregates: list[Aggregate]
    having: Fn | None
    outputs: list[Fn]
    order: list[Order]
    distinct: bool
    limit: Fn | None
    offset: Fn | None

    def rows(self, ctx: Ctx) -> Iterator[Row]:
        """The output rows."""
        source = self.source
        rows: Iterator[Row] = source.rows(ctx) if source is not None else iter([()])
        if self.group is not None:
            width = len(source.scope.slots) if source is not None else 0
            rows = grouped(rows, self.group, self.aggregates, width, ctx)
            if self.having is not None:
                having = self.having
                rows = (r for r in rows if sv.truth(having(r, ctx)))
        outputs = self.outputs
        pairs: Iterator[tuple[Row, Row]] = ((tuple(f(r, ctx) for f in outputs), r) for r in rows)
        if self.distinct:
            pairs = _distinct(pairs)
        if self.order:
            pairs = iter(_sorted(list(pairs), self.order, ctx))
        return _limited((out for out, _ in pairs), self.limit, self.offset, ctx)

    def explain(self) -> list[str]:
        """The plan, one line a stage."""
        lines = self.source.explain() if self.source is not None else ["one row"]
        if self.group is not None:
            lines.append(f"group by {len(self.group)} key(s), {len(self.aggregates)} aggregate(s)")
        if self.order:
            lines.append(f"sort on {len(self.order)} key(s)")
        return lines


def _distinct(pairs: Iterator[tuple[Row, Row]]) -> Iterator[tuple[Row, Row]]:
    seen: set[tuple[Any, ...]] = set()
    for out, row in pairs:
        key = tuple(sv.hash_key(v) for v in out)
        if key not in seen:
            seen.add(key)
            yield out, row


def _sorted(pairs: list[tuple[Row, Row]], order: list[Order], ctx: Ctx) -> list[tuple[Row, Row]]:
    for key, descending in reversed(order):
        if isinstance(key, int):
            position = key
            pairs.sort(key=lambda p: sv.sort_key(p[0][position]), reverse=descending)
        else:
            fn = key
            pairs.sort(key=lambda p: sv.sort_key(fn(p[1], ctx)), reverse=descending)
    return pairs


def _limited(rows: Iterator[Row], limit: Fn | None, offset: Fn | None, ctx: Ctx) -> Iterator[Row]:
    skip = int(sv.to_number(offset((), ctx)) or 0) if offset is not None else 0
    count = int(sv.to_number(limit((), ctx)) or 0) if limit is not None else -1
    if limit is not None and count < 0:
        count = -1
    for i, row in enumerate(rows):
        if i < skip:
            continue
        if count >= 0 and i >= skip + count:
            return
        yield row


def refuse_with(node: exp.Expression) -> None:
    """NotSupportedError for a statement or query with a WITH clause, which CascaDB does not
    read: left unread, `WITH x AS (INSERT ...) SELECT 1` answered without its write, and a
    common table expression named as a table read the table."""
    if node.args.get("with_") is not None or node.args.get("with") is not None:
        raise NotSupportedError("CascaDB does not support WITH (common table expressions)")


def plan_query(node: exp.Expression, outer: Scope | None, params: Params, lookup: Lookup) -> Any:
    """Plan a SELECT or a compound of SELECTs."""
    refuse_with(node)
    if isinstance(node, exp.Subquery | exp.Paren):
        return plan_query(node.this, outer, params, lookup)
    if isinstance(node, exp.Union | exp.Intersect | exp.Except):
        return plan_compound(node, outer, params, lookup)
    if not isinstance(node, exp.Select):
        raise NotSupportedError(f"CascaDB does not support {node.key} here")
    return plan_select(node, outer, params, lookup)


def plan_select(select: exp.Select, outer: Scope | None, params: Params, lookup: Lookup) -> Query:
    """Plan one SELECT."""

    def subquery(node: exp.Expression, scope: Scope) -> Any:
        return plan_query(node, scope, params, lookup)

    refuse_distinct_on(select)
    source = plan_from(select, outer, params, lookup, subquery)
    scope = source.scope
    expressions = _expand(select.expressions, scope)
    group_node = select.args.get("group")
    having_node = select.args.get("having")
    order_node = select.args.get("order")
    clauses = [e for e in [*expressions, having_node, order_node] if e is not None]
    pg = postgres(select)
    # PostgreSQL groups a query with HAVING into one group; sqlite3 refuses it
    aggregated = group_node is not None or has_aggregate(clauses) or (pg and bool(having_node))
    if having_node is not None and not aggregated:
        raise ProgrammingError("HAVING clause on a non-aggregate query")
    aggregates: list[Aggregate] = []
    compiler = Compiler(scope, params, subquery, aggregates if aggregated else None)
    plain = Compiler(scope, params, subquery)
    bounds = Compiler(Scope([], outer), params, subquery)  # LIMIT and OFFSET read no row
    terms = group_terms(select, expressions, scope)
    group = [plain.compile(g) for g in terms] if terms is not None else None
    if aggregated and group is None:
        group = []
    outputs = [compiler.compile(e.this if isinstance(e, exp.Alias) else e) for e in expressions]
    columns = [sqlite_name(e) for e in expressions]
    having = compiler.compile(having_node.this) if having_node is not None else None
    sorted_by: list[exp.Expression] = []  # ORDER BY's terms over the input row
    order = _order(order_node, columns, expressions, compiler, pg, sorted_by)
    if pg and having_node is not None:  # PostgreSQL reads HAVING's type, then the groups
        require_boolean(having_node.this, "HAVING", scope, source.tables())
    if pg and aggregated:  # in PostgreSQL's order: the select list, ORDER BY, HAVING
        read = [e.this if isinstance(e, exp.Alias) else e for e in expressions] + sorted_by
        read += [having_node.this] if having_node is not None else []
        check_grouped(terms or [], read, scope, source.tables())
    return Query(
        columns=columns,
        labels=[postgres_name(e) for e in expressions],
        types=[postgres_type(e) for e in expressions],
        source=source,
        group=group,
        aggregates=aggregates,
        having=having,
        outputs=outputs,
        order=order,
        distinct=bool(select.args.get("distinct")),
        limit=_bound(select, "limit", bounds),
        offset=_bound(select, "offset", bounds),
    )


def _expand(expressions: list[exp.Expression], scope: Scope) -> list[exp.Expression]:
    """The select list with * and t.* replaced by the columns they stand for."""
    found: list[exp.Expression] = []
    for node in expressions:
        star = isinstance(node, exp.Star) or (
            isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
        )
        if not star:
            found.append(node)
            continue
        table = node.table.lower() if isinstance(node, exp.Column) and node.table else None
        slots = [s for s in scope.slots if table is None or s.table == table]
        if table is not None and not slots:
            raise UndefinedTable(f"no such table: {table}")
        found += [declared(exp.column(s.name, table=s.table), s.declared) for s in slots]
    return found


def _order(
    node: exp.Order | None,
    columns: list[str],
    expressions: list[exp.Expression],
    compiler: Compiler,
    pg: bool,
    terms: list[exp.Expression],
) -> list[Order]:
    """ORDER BY's keys: output positions, else expressions over the input row (each also
    appended to `terms`)."""
    if node is None:
        return []
    found: list[Order] = []
    aliases = {c.lower(): i for i, c in enumerate(columns) if isinstance(expressions[i], exp.Alias)}
    for ordinal, ordered in enumerate(node.expressions, start=1):
        term = ordered.this
        descending = bool(ordered.args.get("desc"))
        at = output_position(term, "ORDER", ordinal, len(columns), pg)
        if at is not None:
            found.append((at, descending))
        elif isinstance(term, exp.Column) and not term.table and term.name.lower() in aliases:
            found.append((aliases[term.name.lower()], descending))
        else:
            found.append((compiler.compile(term), descending))
            terms.append(term)
    return found


def _bound(select: exp.Expression, name: str, compiler: Compiler) -> Fn | None:
    clause = select.args.get(name)
    if clause is None:
        return None
    node = clause.expression if clause.expression is not None else clause.this
    return compiler.compile(node)


@dataclass
class Compound:
    """UNION [ALL], INTERSECT or EXCEPT of two queries, with its own ORDER BY and LIMIT."""

    columns: list[str]
    labels: list[str]
    types: list[int | None]
    left: Any
    right: Any
    kind: str
    keep_all: bool
    order: list[tuple[int, bool]]
    limit: Fn | None
    offset: Fn | None

    def rows(self, ctx: Ctx) -> Iterator[Row]:
        """The combined rows."""
        left, right = list(self.left.rows(ctx)), list(self.right.rows(ctx))
        key = _row_key
        if self.kind == "union":
            rows = left + right if self.keep_all else list(_unique(left + right, key))
        else:
            other = {key(r) for r in right}
            wanted = self.kind == "intersect"
            rows = list(_unique([r for r in left if (key(r) in other) == wanted], key))
        for position, descending in reversed(self.order):
            rows.sort(key=lambda r: sv.sort_key(r[position]), reverse=descending)
        return _limited(iter(rows), self.limit, self.offset, ctx)

    def explain(self) -> list[str]:
        """Both sides' plans."""
        return [*self.left.explain(), self.kind, *self.right.explain()]


def _row_key(row: Row) -> tuple[Any, ...]:
    return tuple(sv.hash_key(v) for v in row)


def _unique(rows: list[Row], key: Any) -> Iterator[Row]:
    seen: set[Any] = set()
    for row in rows:
        k = key(row)
        if k not in seen:
            seen.add(k)
            yield row


def plan_compound(
    node: exp.Expression, outer: Scope | None, params: Params, lookup: Lookup
) -> Compound:
    """Plan UNION/INTERSECT/EXCEPT; ORDER BY names or numbers output columns."""
    left = plan_query(node.this, outer, params, lookup)
    right = plan_query(node.expression, outer, params, lookup)
    columns = left.columns
    order: list[tuple[int, bool]] = []
    order_node = node.args.get("order")
    terms = order_node.expressions if order_node is not None else []
    for ordinal, ordered in enumerate(terms, start=1):
        term = ordered.this
        at = output_position(term, "ORDER", ordinal, len(columns), postgres(node))
        if at is None and isinstance(term, exp.Column) and term.name in columns:
            at = columns.index(term.name)
        if at is None:
            raise NotSupportedError("ORDER BY of a compound SELECT names or numbers a column")
        order.append((at, bool(ordered.args.get("desc"))))
    kind = node.key.lower()
    keep_all = isinstance(node, exp.Union) and not node.args.get("distinct")
    plain = Compiler(Scope([], outer), params, lambda n, s: plan_query(n, s, params, lookup))
    return Compound(
        columns,
        left.labels,
        compound_types(left.types, right.types),
        left,
        right,
        kind,
        keep_all,
        order,
        _bound(node, "limit", plain),
        _bound(node, "offset", plain),
    )
