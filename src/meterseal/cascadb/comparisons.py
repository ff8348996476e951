"""Comparisons (`=`, `<`, `IS`, `IN`) compiled with SQLite's affinity applied to the side
without one, and an IN list of constants as a set looked up once a statement."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.errors import ProgrammingError
from meterseal.cascadb.scope import Ctx, Fn, Row

if TYPE_CHECKING:  # the compiler calls in here: its module imports this one
    from meterseal.cascadb.expr import Compiler

COMPARISONS: dict[type[exp.Expression], Callable[[int], bool]] = {
    exp.EQ: lambda o: o == 0,
    exp.NEQ: lambda o: o != 0,
    exp.GT: lambda o: o > 0,
    exp.GTE: lambda o: o >= 0,
    exp.LT: lambda o: o < 0,
    exp.LTE: lambda o: o <= 0,
}


def sides(compiler: Compiler, node: exp.Binary) -> tuple[Fn, Fn]:
    """Both sides of a comparison, SQLite's affinity applied to the side without one."""
    left, right = compiler.compile(node.this), compiler.compile(node.expression)
    la, ra = compiler.affinity(node.this), compiler.affinity(node.expression)
    if la is not None and ra is None:
        right = with_affinity(right, la)
    elif ra is not None and la is None:
        left = with_affinity(left, ra)
    return left, right


def compile_compare(compiler: Compiler, node: exp.Binary) -> Fn:
    """`=`, `<>`, `<`, `<=`, `>`, `>=`: 1, 0, or NULL when either side is NULL."""
    test = COMPARISONS[type(node)]  # type: ignore[index]
    left, right = sides(compiler, node)

    compare = sv.compare

    def compared(row: Row, ctx: Ctx) -> int | None:
        a, b = left(row, ctx), right(row, ctx)
        # (a float or a Decimal may be NaN, which only sv.compare orders)
        if type(a) is type(b) and a is not None and type(a) not in (float, Decimal):
            return int(test(int(a > b) - int(a < b)))
        order = compare(a, b)
        return None if order is None else int(test(order))

    return compared


def compile_is(compiler: Compiler, node: exp.Binary) -> Fn:
    """`IS` and `IS NOT` (`IS [NOT] DISTINCT FROM`): NULL equals NULL, never NULL itself."""
    left, right = sides(compiler, node)
    negate = isinstance(node, exp.NullSafeNEQ)

    def same(row: Row, ctx: Ctx) -> int:
        a, b = left(row, ctx), right(row, ctx)
        equal = (a is None and b is None) or (a is not None and sv.compare(a, b) == 0)
        return int(equal != negate)

    return same


def compile_is_null(compiler: Compiler, node: exp.Is) -> Fn:
    """`x IS NULL` and `x IS NOT NULL`, else `x IS y`."""
    if not isinstance(node.expression, exp.Null):
        return compile_is(compiler, node)
    inner = compiler.compile(node.this)
    # sqlglot reads PostgreSQL's `x IS NOT NULL` and `x NOTNULL` as one negated node (SQLite's
    # as NOT around `x IS NULL`)
    if node.args.get("negate"):
        return lambda row, ctx: int(inner(row, ctx) is not None)
    return lambda row, ctx: int(inner(row, ctx) is None)


def compile_in(compiler: Compiler, node: exp.In) -> Fn:
    """`x IN (subquery)` and `x IN (list)`: 1, 0, or NULL when not found and a NULL was."""
    needle = compiler.compile(node.this)
    affinity = compiler.affinity(node.this)
    query = node.args.get("query")
    if query is not None:
        plan = compiler.subquery(
            query.this if isinstance(query, exp.Subquery) else query, compiler.scope
        )
        if len(getattr(plan, "columns", [None])) != 1:
            raise ProgrammingError("the subquery of IN must return one column")

        uncorrelated = compiler.uncorrelated(
            query.this if isinstance(query, exp.Subquery) else query
        )

        def candidates(row: Row, ctx: Ctx) -> list[Any]:
            if uncorrelated and id(plan) in ctx.memo:
                return ctx.memo[id(plan)]  # type: ignore[no-any-return]
            found = [r[0] for r in plan.rows(ctx.inner(row))]
            if uncorrelated:
                ctx.memo[id(plan)] = found
            return found
    else:
        items = [compiler.compile(e) for e in node.expressions]
        if affinity is not None:
            items = [with_affinity(f, affinity) for f in items]
        if not any(_reads_rows(e) for e in node.expressions):
            return _in_constants(needle, items)

        def candidates(row: Row, ctx: Ctx) -> list[Any]:
            return [f(row, ctx) for f in items]

    def member(row: Row, ctx: Ctx) -> int | None:
        value = needle(row, ctx)
        found = candidates(row, ctx)
        if not found:
            return 0
        if value is None:
            return None
        if any(sv.compare(value, c) == 0 for c in found):
            return 1
        return None if any(c is None for c in found) else 0

    return member


def _in_constants(needle: Fn, items: list[Fn]) -> Fn:
    """IN over a list of literals and parameters: evaluated once a statement, then each
    row a set lookup (a key's IN list of 1,000 was 1,000 comparisons a row)."""
    memo_key = id(items)

    def member(row: Row, ctx: Ctx) -> int | None:
        known = ctx.memo.get(memo_key)
        if known is None:
            found = [f(row, ctx) for f in items]
            known = ctx.memo[memo_key] = (found, set(_hashable(found)), None in found)
        found, values, has_null = known
        if not found:
            return 0
        value = needle(row, ctx)
        if value is None:
            return None
        if _is_hashable(value) and len(values) == len(found) - has_null:
            if value in values:  # Python's == is SQLite's = for these kinds of value
                return 1
            return None if has_null else 0
        if any(sv.compare(value, c) == 0 for c in found):
            return 1
        return None if has_null else 0

    return member


def with_affinity(fn: Fn, affinity: str) -> Fn:
    """`fn`'s value as SQLite's comparison converts it to a column's `affinity`."""
    if affinity in (sv.INTEGER, sv.REAL, sv.NUMERIC, sv.DECIMAL):
        return lambda row, ctx: _numeric_affinity(fn(row, ctx))
    if affinity == sv.TEXT:
        return lambda row, ctx: _text_affinity(fn(row, ctx))
    return fn


def _numeric_affinity(value: Any) -> Any:
    if isinstance(value, str):
        parsed = sv.parse_number(value)
        return value if parsed is None else parsed
    return value


def _text_affinity(value: Any) -> Any:
    return sv.text_of(value) if isinstance(value, int | float) else value


def _is_hashable(value: Any) -> bool:
    return isinstance(value, int | str | bytes) and not isinstance(value, bool)


def _hashable(values: list[Any]) -> list[Any]:
    """The values a set can answer for exactly: integers, text and bytes (no NULL)."""
    return [v for v in values if _is_hashable(v)]


def _reads_rows(node: exp.Expression) -> bool:
    """Whether `node` reads a column or a subquery (`$n` parameters are columns to sqlglot)."""
    if node.find(exp.Select) is not None:
        return True
    return any(not c.name.startswith("$") for c in node.find_all(exp.Column))
