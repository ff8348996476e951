"""SQL expressions (sqlglot trees) compiled into Python closures over a row and a context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.casts import compile_cast
from meterseal.cascadb.comparisons import (
    COMPARISONS,
    compile_compare,
    compile_in,
    compile_is,
    compile_is_null,
)
from meterseal.cascadb.errors import (
    DivisionByZero,
    InterfaceError,
    NotSupportedError,
    ProgrammingError,
)
from meterseal.cascadb.functions import (
    FUNCTIONS,
    agg_name,
    arguments,
    session_function,
    takes,
)
from meterseal.cascadb.scope import Aggregate as Aggregate
from meterseal.cascadb.scope import Ctx as Ctx
from meterseal.cascadb.scope import Fn as Fn
from meterseal.cascadb.scope import Params as Params
from meterseal.cascadb.scope import Row as Row
from meterseal.cascadb.scope import Scope as Scope
from meterseal.cascadb.scope import Slot as Slot
from meterseal.cascadb.scope import SubPlan as SubPlan

AGGREGATES = {"count", "sum", "avg", "min", "max", "total", "group_concat"}

SubqueryCompiler = Callable[[exp.Expression, Scope], SubPlan]


@dataclass
class Compiler:
    """Compiles expressions of one scope; with `aggregates` set, aggregate calls become slots."""

    scope: Scope
    params: Params
    subquery: SubqueryCompiler
    aggregates: list[Aggregate] | None = None
    aliases: dict[str, Fn] = field(default_factory=dict)

    def compile(self, node: exp.Expression) -> Fn:
        """A closure computing `node` from a row and a context."""
        method = _COMPILERS.get(type(node))
        if method is not None:
            return method(self, node)
        told = session_function(node)  # version(), current_user...: no arguments to compile
        if told is not None:
            return told
        if isinstance(node, exp.Func) and agg_name(node) is not None:
            return self._aggregate(node)
        if isinstance(node, exp.Binary) and type(node) in _BINARY:
            return self._binary(_BINARY[type(node)], node)
        if isinstance(node, exp.Anonymous | exp.Func):
            return self._function(node)
        raise NotSupportedError(f"CascaDB does not support {node.sql()!r} ({node.key})")

    def affinity(self, node: exp.Expression) -> str | None:
        """The affinity of an expression: a column's, else None."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column) and not node.name.startswith("$"):
            try:
                return self.scope.resolve(_table(node), node.name.lower())[2].affinity
            except ProgrammingError:
                return None
        return None

    def _column(self, node: exp.Column) -> Fn:
        name = node.name
        if name.startswith("$") and name[1:].isdigit():
            return self._param_at(self.params.take(int(name[1:]) - 1))
        table = _table(node)
        if table is None and name.lower() in self.aliases:
            return self.aliases[name.lower()]
        depth, position, _ = self.scope.resolve(table, name.lower())
        if depth == 0:
            return lambda row, ctx: row[position]
        return lambda row, ctx: ctx.outer[-depth][position]

    def _param_at(self, index: int) -> Fn:
        def parameter(row: Row, ctx: Ctx) -> Any:
            try:
                return ctx.params[index]
            except IndexError:
                raise InterfaceError(f"parameter {index + 1} was not given") from None

        return parameter

    def _placeholder(self, node: exp.Expression) -> Fn:
        raw = node.name if isinstance(node, exp.Placeholder) else node.this.name
        explicit = int(raw) - 1 if raw and str(raw).isdigit() else None
        return self._param_at(self.params.take(explicit))

    def _literal(self, node: exp.Literal) -> Fn:
        value: Any
        if node.is_string:
            value = node.this
        else:
            text = node.this
            parsed = sv.parse_number(text)
            value = parsed if parsed is not None else _float(text)
            if isinstance(value, int) and ("." in text or "e" in text.lower()):
                value = float(value)
        return lambda row, ctx: value

    def _binary(self, op: Callable[[Any, Any], Any], node: exp.Binary) -> Fn:
        left, right = self.compile(node.this), self.compile(node.expression)
        if not isinstance(node, exp.Div | exp.Mod):
            return lambda row, ctx: op(left(row, ctx), right(row, ctx))
        modulo = isinstance(node, exp.Mod)

        def divided(row: Row, ctx: Ctx) -> Any:
            a, b = left(row, ctx), right(row, ctx)
            if ctx.zero_division and sv.divides_by_zero(a, b, modulo):
                raise DivisionByZero("division by zero")
            return op(a, b)

        return divided

    def _and(self, node: exp.And) -> Fn:
        left, right = self.compile(node.this), self.compile(node.expression)

        def both(row: Row, ctx: Ctx) -> int | None:
            a = sv.truth(left(row, ctx))
            if a is False:
                return 0
            b = sv.truth(right(row, ctx))
            if b is False:
                return 0
            return None if a is None or b is None else 1

        return both

    def _or(self, node: exp.Or) -> Fn:
        left, right = self.compile(node.this), self.compile(node.expression)

        def either(row: Row, ctx: Ctx) -> int | None:
            a = sv.truth(left(row, ctx))
            if a:
                return 1
            b = sv.truth(right(row, ctx))
            if b:
                return 1
            return None if a is None or b is None else 0

        return either

    def _not(self, node: exp.Not) -> Fn:
        inner = self.compile(node.this)

        def negated(row: Row, ctx: Ctx) -> int | None:
            value = sv.truth(inner(row, ctx))
            return None if value is None else int(not value)

        return negated

    def _between(self, node: exp.Between) -> Fn:
        low = self.compile(exp.GTE(this=node.this, expression=node.args["low"]))
        high = self.compile(exp.LTE(this=node.this, expression=node.args["high"]))
        return self._and_fns(low, high)

    def _and_fns(self, low: Fn, high: Fn) -> Fn:
        def both(row: Row, ctx: Ctx) -> int | None:
            a, b = sv.truth(low(row, ctx)), sv.truth(high(row, ctx))
            if a is False or b is False:
                return 0
            return None if a is None or b is None else 1

        return both

    def _exists(self, node: exp.Exists) -> Fn:
        plan = self.subquery(node.this, self.scope)
        return lambda row, ctx: int(next(iter(plan.rows(ctx.inner(row))), None) is not None)

    def _subquery(self, node: exp.Subquery) -> Fn:
        plan = self.subquery(node.this, self.scope)

        def scalar(row: Row, ctx: Ctx) -> Any:
            first = next(iter(plan.rows(ctx.inner(row))), None)
            return None if first is None else first[0]

        if not self.uncorrelated(node.this):
            return scalar

        def once(row: Row, ctx: Ctx) -> Any:
            if id(plan) not in ctx.memo:
                ctx.memo[id(plan)] = scalar(row, ctx)
            return ctx.memo[id(plan)]

        return once

    def uncorrelated(self, node: exp.Expression) -> bool:
        """Whether a subquery reads no column of the queries around it."""
        try:
            self.subquery(node, Scope([]))
        except ProgrammingError:
            return False
        return True

    def _case(self, node: exp.Case) -> Fn:
        subject = self.compile(node.this) if node.this is not None else None
        branches = [(self.compile(i.this), self.compile(i.args["true"])) for i in node.args["ifs"]]
        default = self.compile(node.args["default"]) if node.args.get("default") else None

        def case(row: Row, ctx: Ctx) -> Any:
            value = subject(row, ctx) if subject is not None else None
            for when, then in branches:
                test = when(row, ctx)
                hit = sv.compare(value, test) == 0 if subject is not None else sv.truth(test)
                if hit:
                    return then(row, ctx)
            return default(row, ctx) if default is not None else None

        return case

    def _like(self, node: exp.Like) -> Fn:
        value, pattern = self.compile(node.this), self.compile(node.expression)
        escape_node = node.args.get("escape")
        escape = escape_node.name if escape_node is not None else None
        negate = bool(node.args.get("negate"))

        def matches(row: Row, ctx: Ctx) -> int | None:
            found = sv.like(value(row, ctx), pattern(row, ctx), escape)
            return None if found is None else int(found != negate)

        return matches

    def _escape(self, node: exp.Escape) -> Fn:
        like = node.this.copy()
        like.set("escape", node.expression.copy())
        return self.compile(like)

    def _cast(self, node: exp.Cast) -> Fn:
        return compile_cast(node, self.compile(node.this))

    def _aggregate(self, node: exp.Expression) -> Fn:
        if self.aggregates is None:
            raise ProgrammingError(f"misuse of aggregate function {node.sql()}")
        name = agg_name(node)
        assert name is not None
        arg_node = node.this if not isinstance(node, exp.Anonymous) else node.expressions[0]
        distinct = isinstance(arg_node, exp.Distinct)
        if distinct:
            arg_node = arg_node.expressions[0]
        inner = Compiler(self.scope, self.params, self.subquery)  # no nested aggregates
        arg = (
            None if isinstance(arg_node, exp.Star) or arg_node is None else inner.compile(arg_node)
        )
        slot = len(self.scope.slots) + len(self.aggregates)
        self.aggregates.append(Aggregate(name, arg, distinct))
        return lambda row, ctx: row[slot]

    def _function(self, node: exp.Expression) -> Fn:
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.key
        args = [self.compile(a) for a in arguments(node)]
        function = FUNCTIONS.get(name)
        if function is None:
            raise NotSupportedError(f"CascaDB does not support the function {name}()")
        if not takes(function, len(args)):  # else a TypeError per row, ending the session
            raise NotSupportedError(f"CascaDB does not support {name}() of {len(args)} arguments")
        return lambda row, ctx: function(*(a(row, ctx) for a in args))

    def _paren(self, node: exp.Paren) -> Fn:
        return self.compile(node.this)

    def _hex(self, node: exp.HexString) -> Fn:
        value = bytes.fromhex(node.this)
        return lambda row, ctx: value

    def _null(self, node: exp.Null) -> Fn:
        return lambda row, ctx: None

    def _boolean(self, node: exp.Boolean) -> Fn:
        value = int(node.this)
        return lambda row, ctx: value

    def _neg(self, node: exp.Neg) -> Fn:
        inner = self.compile(node.this)
        return lambda row, ctx: sv.negate(inner(row, ctx))

    def _concat(self, node: exp.DPipe) -> Fn:
        left, right = self.compile(node.this), self.compile(node.expression)

        def joined(row: Row, ctx: Ctx) -> str | None:
            a, b = left(row, ctx), right(row, ctx)
            return None if a is None or b is None else sv.text_of(a) + sv.text_of(b)

        return joined


def _table(node: exp.Column) -> str | None:
    return node.table.lower() if node.table else None


_BINARY: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.Add: sv.add,
    exp.Sub: sv.subtract,
    exp.Mul: sv.multiply,
    exp.Div: sv.divide,
    exp.Mod: sv.modulo,
}

_COMPILERS: dict[type[exp.Expression], Callable[[Compiler, Any], Fn]] = {
    exp.Column: Compiler._column,
    exp.Placeholder: Compiler._placeholder,
    exp.Parameter: Compiler._placeholder,
    exp.Literal: Compiler._literal,
    exp.Null: Compiler._null,
    exp.HexString: Compiler._hex,
    exp.Boolean: Compiler._boolean,
    exp.Paren: Compiler._paren,
    exp.Neg: Compiler._neg,
    exp.And: Compiler._and,
    exp.Or: Compiler._or,
    exp.Not: Compiler._not,
    exp.Is: compile_is_null,
    exp.NullSafeEQ: compile_is,
    exp.NullSafeNEQ: compile_is,
    exp.Between: Compiler._between,
    exp.In: compile_in,
    exp.Exists: Compiler._exists,
    exp.Subquery: Compiler._subquery,
    exp.Case: Compiler._case,
    exp.Like: Compiler._like,
    exp.Escape: Compiler._escape,
    exp.Cast: Compiler._cast,
    exp.DPipe: Compiler._concat,
    **{t: compile_compare for t in COMPARISONS},
}


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # `1e` (sqlglot's number token): else the session ended
        raise ProgrammingError(f"syntax error: invalid number {text!r}") from None
