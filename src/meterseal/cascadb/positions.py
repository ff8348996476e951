"""GROUP BY and ORDER BY terms read as sqlite3 and PostgreSQL read them: an integer constant is
an output column's position (1-based; outside the select list an error), an output column's
alias stands for its expression, and an aggregate has no place in GROUP BY.

Both read an integer as a literal of at most 2147483647 under any number of minus signs and
parentheses (`-(1)` is position -1, out of range); another constant (`'x'`, `1.5`, `NULL`,
`3000000000`) is an expression to SQLite and an error (42601) to PostgreSQL. sqlglot drops a
unary plus: `+1` is a position to sqlite3 as to sqlglot, but to PostgreSQL an expression (a
constant: one group), so in its dialect a number written after a `+` is marked (PLUS).
"""

from __future__ import annotations

from sqlglot import exp

from meterseal.cascadb.errors import (
    GroupingError,
    InvalidColumnReference,
    NotSupportedError,
    ProgrammingError,
)
from meterseal.cascadb.scope import Scope

POSTGRES = "meterseal_postgres_positions"  # key of a query's node meta: PostgreSQL's rules
PLUS = "meterseal_unary_plus"  # key of a number's node meta: written after a unary `+`
_QUERIES = (exp.Select, exp.SetOperation)
_INT4 = 2**31 - 1  # the largest literal both read as an integer (a 32-bit int)


def mark_positions(statement: exp.Expression, sql: str) -> None:
    """Mark the queries of `statement` (parsed from `sql`) as read in PostgreSQL's dialect
    (their positions), and the numbers of their GROUP BY and ORDER BY terms written after a
    unary plus (`+1`, `+(1)`, `-+1`), which sqlglot drops."""
    for node in statement.find_all(*_QUERIES):
        node.meta[POSTGRES] = True
        for clause in (node.args.get("group"), node.args.get("order")):
            for term in clause.expressions if clause is not None else []:
                for literal in term.find_all(exp.Literal):
                    start = literal.meta.get("start")
                    before = sql[:start].rstrip(" \t\r\n(") if isinstance(start, int) else ""
                    if before.endswith("+"):
                        literal.meta[PLUS] = True


def postgres(query: exp.Expression) -> bool:
    """Whether `query` (a SELECT or a compound) was read in PostgreSQL's dialect."""
    return bool(query.meta.get(POSTGRES))


def _constant(term: exp.Expression) -> tuple[bool, int | None]:
    """Whether `term` is a constant, and the integer it is (its signs folded) or None."""
    negated, node = False, term
    while isinstance(node, exp.Paren | exp.Neg):
        negated ^= isinstance(node, exp.Neg)
        node = node.this
    if node.meta.get(PLUS):  # PostgreSQL's `+1`: an expression
        return False, None
    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        digits = text.lstrip("0") or "0"  # (a long literal is no int4, nor read as one)
        if text.isascii() and text.isdigit() and len(digits) <= 10 and int(digits) <= _INT4:
            return True, -int(digits) if negated else int(digits)
        return True, None
    # a minus over a string, TRUE or NULL is an expression, as in PostgreSQL
    return not negated and isinstance(node, exp.Literal | exp.Boolean | exp.Null), None


def output_position(
    term: exp.Expression, clause: str, ordinal: int, count: int, pg: bool
) -> int | None:
    """The 0-based output position `term` (the `ordinal`th of `clause`, GROUP or ORDER) names
    among `count` output columns; None when it is an expression."""
    constant, found = _constant(term)
    if found is None:
        if constant and pg:
            raise ProgrammingError(f"non-integer constant in {clause} BY")
        return None
    if 1 <= found <= count:
        return found - 1
    if pg:
        raise InvalidColumnReference(f"{clause} BY position {found} is not in select list")
    raise InvalidColumnReference(
        f"{_nth(ordinal)} {clause} BY term out of range - should be between 1 and {count}"
    )


def _nth(n: int) -> str:
    """sqlite3's ordinal: 1st, 2nd, 3rd, 4th, 11th, 21st."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def has_aggregate(nodes: list[exp.Expression]) -> bool:
    """Whether an aggregate call appears outside subqueries."""
    kinds = (exp.Count, exp.Sum, exp.Avg, exp.GroupConcat)
    stack = list(nodes)
    while stack:
        sub = stack.pop()
        if isinstance(sub, exp.Select | exp.Subquery | exp.Union | exp.Intersect | exp.Except):
            continue
        if isinstance(sub, kinds) or (isinstance(sub, exp.Max | exp.Min) and not sub.expressions):
            return True
        if isinstance(sub, exp.Anonymous) and sub.name.lower() == "total":
            return True
        stack.extend(sub.iter_expressions())
    return False


def group_terms(
    select: exp.Select, expressions: list[exp.Expression], scope: Scope
) -> list[exp.Expression] | None:
    """The expression each GROUP BY term of `select` stands for (over the input row); None
    without GROUP BY. `expressions`: the select list, `*` expanded."""
    node = select.args.get("group")
    if node is None:
        return None
    pg = postgres(select)
    outputs = [e.this if isinstance(e, exp.Alias) else e for e in expressions]
    aliases = {e.alias.lower(): e.this for e in reversed(expressions) if isinstance(e, exp.Alias)}
    terms = []
    for ordinal, term in enumerate(node.expressions, start=1):
        at = output_position(term, "GROUP", ordinal, len(outputs), pg)
        alias = _alias(term, scope) if at is None else None
        if at is not None:
            term = outputs[at]
        elif alias is not None and alias in aliases:  # a column of FROM's comes first, in both
            term = aliases[alias]
        if has_aggregate([term]):
            where = "GROUP BY" if pg else "the GROUP BY clause"
            raise GroupingError(f"aggregate functions are not allowed in {where}")
        terms.append(term)
    return terms


def _alias(term: exp.Expression, scope: Scope) -> str | None:
    """The name of an unqualified column that is no column of the query's own FROM."""
    if not isinstance(term, exp.Column) or term.table or isinstance(term.this, exp.Star):
        return None
    name = term.name.lower()
    return None if any(s.name == name for s in scope.slots) else name


def refuse_distinct_on(select: exp.Select) -> None:
    """NotSupportedError for DISTINCT ON, which would otherwise be read as a plain DISTINCT."""
    distinct = select.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        raise NotSupportedError("CascaDB does not support DISTINCT ON")
