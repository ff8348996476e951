"""The PostgreSQL types of output columns that their expressions tell (PostgreSQL's dialect).

PostgreSQL types a comparison, AND, OR, NOT, IS [NOT] NULL/TRUE/FALSE/DISTINCT FROM, IN,
BETWEEN, LIKE/ILIKE, EXISTS and `true`/`false` as boolean. CascaDB evaluates them as SQLite
does, to 1, 0 or NULL, so their values alone would describe an int8 column: the type is read
from the expression instead. A column no rule here types (None) is typed from its values
(pgtypes.oid_of).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from meterseal.cascadb.pgtypes import BOOL

_BOOLEAN = (exp.Predicate, exp.And, exp.Or, exp.Not, exp.Boolean)  # sqlglot's comparisons,
# IS, IN, BETWEEN, LIKE, ILIKE and EXISTS are its Predicates


def postgres_type(node: exp.Expression) -> int | None:
    """The type OID PostgreSQL gives the output column of `node` when the expression alone
    tells it (bool), else None."""
    while isinstance(node, exp.Alias | exp.Paren | exp.Escape):  # Escape wraps a LIKE
        node = node.this
    if isinstance(node, _BOOLEAN):
        return BOOL
    if isinstance(node, exp.Case):  # every branch a Boolean (or NULL), as PostgreSQL resolves it
        branches = [i.args["true"] for i in node.args["ifs"]] + [node.args.get("default")]
        return _common([b for b in branches if b is not None])
    if isinstance(node, exp.Coalesce):
        return _common([node.this, *node.expressions])
    if isinstance(node, exp.Subquery):  # a scalar subquery: its one column's type
        inner = node.unnest()
        while isinstance(inner, exp.SetOperation):
            inner = inner.this
        if isinstance(inner, exp.Select) and len(inner.expressions) == 1:
            return postgres_type(inner.expressions[0])
    return None


def compound_types(left: Sequence[int | None], right: Sequence[int | None]) -> list[int | None]:
    """The types of a UNION, INTERSECT or EXCEPT's columns: a type both sides tell, else None."""
    return [a if a == b else None for a, b in zip(left, right, strict=False)]


def _common(nodes: list[exp.Expression]) -> int | None:
    """BOOL when the nodes are Booleans or NULLs, at least one a Boolean."""
    typed = [n for n in nodes if not isinstance(n, exp.Null)]
    if typed and all(postgres_type(n) == BOOL for n in typed):
        return BOOL
    return None
