"""SELECT planned into our own plan: table accesses, join steps, then filter, group, project, sort.

Conditions go to the first join step where their tables are all read; each step reads its table
through the narrowest key path (access.py). A join is a merge join when both sides come in
primary-key order and the condition equates their first key columns, an index (nested loop)
join when the right table has a key path on the left row's values, a hash join on other
equalities, else a loop over the right table read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.access import Path, choose_path, read
from meterseal.cascadb.aggregate import grouped
from meterseal.cascadb.catalog import Table
from meterseal.cascadb.errors import NotSupportedError, ProgrammingError
from meterseal.cascadb.expr import Aggregate, Compiler, Ctx, Fn, Params, Row, Scope, Slot
from meterseal.cascadb.grouping import require_boolean
from meterseal.cascadb.positions import postgres

Lookup = Callable[[str], Table]


@dataclass
class Access:
    """Reading one table: its alias, key path and the conditions checked on its rows."""

    table: Table
    alias: str
    path: Path
    check: Fn | None = None  # over the joined row so far

    def rows(self, left: Row, ctx: Ctx) -> Iterator[Row]:
        """`left` joined with each row of the table on the path that passes the check."""
        check = self.check
        for row in read(self.path, self.table, ctx.kv, left, ctx):
            joined = left + row
            if check is None or sv.truth(check(joined, ctx)):
                yield joined


@dataclass
class Step:
    """One join: how (merge, index, hash, loop), the right table, and LEFT or not."""

    access: Access
    method: str
    outer: bool
    left_keys: list[Fn] = field(default_factory=list)
    right_keys: list[Fn] = field(default_factory=list)
    after: Fn | None = None  # WHERE conditions on a LEFT join's right side

    def rows(self, left_rows: Iterator[Row], ctx: Ctx) -> Iterator[Row]:
        """The joined rows."""
        width = len(self.access.table.columns)
        matcher = self._matcher(ctx)
        for left in left_rows:
            found = False
            for joined in matcher(left):
                found = True
                yield joined
            if not found and self.outer:
                yield left + (None,) * width

    def _matcher(self, ctx: Ctx) -> Callable[[Row], Iterator[Row]]:
        access = self.access
        if self.method == "index":
            return lambda left: access.rows(left, ctx)
        whole = Path(index=None)

        def stored() -> Iterator[Row]:
            return read(whole, access.table, ctx.kv, (), ctx)

        if self.method == "merge":
            return _merger(stored(), self.left_keys[0], self.right_keys[0], access, ctx)
        if self.method == "hash":
            table: dict[tuple[Any, ...], list[Row]] = {}
            for row in stored():
                key = tuple(sv.hash_key(k(row, ctx)) for k in self.right_keys)
                if None not in key:
                    table.setdefault(key, []).append(row)

            def probe(left: Row) -> Iterator[Row]:
                key = tuple(sv.hash_key(k(left, ctx)) for k in self.left_keys)
                return _checked(left, table.get(key, []), access, ctx)

            return probe
        everything = list(stored())
        return lambda left: _checked(left, everything, access, ctx)


def _checked(left: Row, rows: list[Row], access: Access, ctx: Ctx) -> Iterator[Row]:
    for row in rows:
        joined = left + row
        if access.check is None or sv.truth(access.check(joined, ctx)):
            yield joined


def _merger(
    right_rows: Iterator[Row], left_key: Fn, right_key: Fn, access: Access, ctx: Ctx
) -> Callable[[Row], Iterator[Row]]:
    """Matches of each left row, both sides ascending on the key (a merge join)."""
    pending: list[Row | None] = [next(right_rows, None)]
    group: list[Row] = []
    group_key: list[Any] = [None]

    def matches(left: Row) -> Iterator[Row]:
        key = left_key(left, ctx)
        if key is None:
            return iter(())
        wanted = sv.sort_key(key)
        if group and group_key[0] == wanted:
            return _checked(left, group, access, ctx)
        group.clear()
        while pending[0] is not None and sv.sort_key(right_key(pending[0], ctx)) < wanted:
            pending[0] = next(right_rows, None)
        while pending[0] is not None and sv.sort_key(right_key(pending[0], ctx)) == wanted:
            group.append(pending[0])
            pending[0] = next(right_rows, None)
        group_key[0] = wanted
        return _checked(left, group, access, ctx)

    return matches


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    """The AND-ed parts of a condition."""
    if node is None:
        return []
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    return [node]


def _has_subquery(node: exp.Expression) -> bool:
    return any(isinstance(n, exp.Select | exp.Subquery | exp.Exists) for n in node.walk())


def _tables_of(node: exp.Expression, sources: list[tuple[str, Table]]) -> set[int] | None:
    """Which sources (by position) a condition reads; None when it has a subquery."""
    if _has_subquery(node):
        return None
    found = set()
    for column in node.find_all(exp.Column):
        if column.name.startswith("$"):
            continue
        for i, (alias, table) in enumerate(sources):
            qualified = column.table and column.table.lower() == alias
            if qualified or (not column.table and _has_column(table, column.name)):
                found.add(i)
                break
    return found


def _has_column(table: Table, name: str) -> bool:
    return any(c.name.lower() == name.lower() for c in table.columns)


def _slots(table: Table, alias: str) -> list[Slot]:
    return [
        Slot(alias, c.name.lower(), c.affinity, (table.name, i), c.name)
        for i, c in enumerate(table.columns)
    ]


@dataclass
class From:
    """The FROM clause planned: the first access and the join steps; `scope` is the joined row."""

    first: Access | None
    steps: list[Step]
    scope: Scope
    last: Fn | None  # conditions with subqueries, checked on the joined row

    def rows(self, ctx: Ctx) -> Iterator[Row]:
        """The joined rows passing every condition."""
        rows: Iterator[Row] = self.first.rows((), ctx) if self.first else iter([()])
        for step in self.steps:
            rows = step.rows(rows, ctx)
            if step.after is not None:
                after = step.after
                rows = (r for r in rows if sv.truth(after(r, ctx)))
        if self.last is not None:
            last = self.last
            rows = (r for r in rows if sv.truth(last(r, ctx)))
        return rows

    def tables(self) -> list[tuple[str, Table]]:
        """The alias and table of each FROM item, in order."""
        accesses = [self.first] if self.first is not None else []
        return [(a.alias, a.table) for a in accesses + [s.access for s in self.steps]]

    def explain(self) -> list[str]:
        """One line per table read."""
        lines = []
        if self.first is not None:
            lines.append(self.first.path.explain(self.first.table))
        for step in self.steps:
            kind = "left join" if step.outer else "join"
            lines.append(f"{step.method} {kind}: {step.access.path.explain(step.access.table)}")
        return lines


def _items(select: exp.Select) -> list[tuple[exp.Expression, str | None, list[exp.Expression]]]:
    """(table expression, join kind, ON/USING conditions) of each FROM item, in order."""
    source = select.args.get("from_") or select.args.get("from")
    if source is None:
        return []
    first = source.this
    joins = list(select.args.get("joins") or [])
    while isinstance(first, exp.Subquery | exp.Paren) and isinstance(first.this, exp.Table):
        joins = list(first.this.args.get("joins") or []) + joins  # FROM (a JOIN b)
        first = first.this
    items: list[tuple[exp.Expression, str | None, list[exp.Expression]]] = [(first, None, [])]
    for join in joins:
        side = (join.args.get("side") or "").upper()
        if side in ("RIGHT", "FULL"):
            raise NotSupportedError(f"CascaDB does not support {side} JOIN")
        using = [
            exp.EQ(
                this=exp.column(u.name, table=_alias_of(items[-1][0])),
                expression=exp.column(u.name, table=_alias_of(join.this)),
            )
            for u in join.args.get("using") or []
        ]
        items.append(
            (
                join.this,
                "LEFT" if side == "LEFT" else "INNER",
                [*conjuncts(join.args.get("on")), *using],
            )
        )
    return items


def _alias_of(node: exp.Expression) -> str:
    return (node.alias or node.name).lower()


def plan_from(
    select: exp.Select, outer: Scope | None, params: Params, lookup: Lookup, subquery: Any
) -> From:
    """Plan the FROM and WHERE of `select`."""
    items = _items(select)
    sources: list[tuple[str, Table]] = []
    for node, _, _ in items:
        if not isinstance(node, exp.Table):
            raise NotSupportedError("CascaDB reads tables in FROM, not subqueries")
        sources.append((_alias_of(node), lookup(node.name)))
    placed: dict[int, list[exp.Expression]] = {}
    after: dict[int, list[exp.Expression]] = {}
    last: list[exp.Expression] = []
    for condition in conjuncts(select.args.get("where") and select.args["where"].this):
        tables = _tables_of(condition, sources)
        if tables is None or not items:  # (no FROM: no table's access to check it)
            last.append(condition)
            continue
        at = max(tables, default=0)
        (after if items and items[at][1] == "LEFT" else placed).setdefault(at, []).append(condition)
    slots: list[Slot] = []
    first: Access | None = None
    steps: list[Step] = []
    for i, ((alias, table), (_, kind, on)) in enumerate(zip(sources, items, strict=True)):
        mine = placed.get(i, []) + on
        before = Scope(list(slots), outer)
        slots += _slots(table, alias)
        scope = Scope(list(slots), outer)
        path = choose_path(mine, alias, table, Compiler(before, params, subquery))
        check = _all(Compiler(scope, params, subquery), mine)
        access = Access(table, alias, path, check)
        if i == 0:
            first = access
            continue
        step = _join_step(access, kind == "LEFT", mine, first, before, params, subquery, i)
        if after.get(i):
            step.after = _all(Compiler(scope, params, subquery), after[i])
        steps.append(step)
    scope = Scope(slots, outer)
    where = select.args.get("where")
    if where is not None and postgres(select):
        require_boolean(where.this, "WHERE", scope, sources)
    return From(first, steps, scope, _all(Compiler(scope, params, subquery), last))


def _all(compiler: Compiler, nodes: list[exp.Expression]) -> Fn | None:
    if not nodes:
        return None
    fns = [compiler.compile(n) for n in nodes]
    if len(fns) == 1:
        return fns[0]
    return lambda row, ctx: int(all(sv.truth(f(row, ctx)) for f in fns))


def _join_step(
    access: Access,
    outer: bool,
    conditions: list[exp.Expression],
    first: Access | None,
    before: Scope,
    params: Params,
    subquery: Any,
    position: int,
) -> Step:
    right_scope = Scope(_slots(access.table, access.alias), before.outer)
    left_c = Compiler(before, params, subquery)
    right_c = Compiler(right_scope, params, subquery)
    pairs: list[tuple[Fn, Fn, bool]] = []
    for condition in conditions:
        if not isinstance(condition, exp.EQ):
            continue
        for mine, theirs in (
            (condition.expression, condition.this),
            (condition.this, condition.expression),
        ):
            try:
                right_fn, left_fn = right_c.compile(mine), left_c.compile(theirs)
            except ProgrammingError:
                continue
            pairs.append((left_fn, right_fn, _first_keys(theirs, mine, first, access)))
            break
    merge = [p for p in pairs if p[2]]
    if (
        position == 1
        and merge
        and first is not None
        and first.path.index is None
        and first.path.among is None
    ):
        return Step(access, "merge", outer, [merge[0][0]], [merge[0][1]])
    if access.path.score > 0:
        return Step(access, "index", outer)
    if pairs:
        return Step(access, "hash", outer, [p[0] for p in pairs], [p[1] for p in pairs])
    return Step(access, "loop", outer)


def _first_keys(
    left: exp.Expression, right: exp.Expression, first: Access | None, access: Access
) -> bool:
    """Whether `left` = `right` equates the first primary-key columns of the two tables."""
    if first is None or not first.table.primary or not access.table.primary:
        return False
    if not isinstance(left, exp.Column) or not isinstance(right, exp.Column):
        return False
    left_key = first.table.columns[first.table.primary[0]].name.lower()
    right_key = access.table.columns[access.table.primary[0]].name.lower()
    left_ok = left.name.lower() == left_key and (
        not left.table or left.table.lower() == first.alias
    )
    right_ok = right.name.lower() == right_key and (
        not right.table or right.table.lower() == access.alias
    )
    return left_ok and right_ok


__all__ = ["Aggregate", "From", "grouped", "plan_from"]
