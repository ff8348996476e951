"""SQL's scalar functions (abs, coalesce, substr, round, ...) as SQLite computes them, and
PostgreSQL's that tell about the server and the session (version(), current_user...)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.errors import NotSupportedError
from meterseal.cascadb.pg_settings import SCHEMA, VERSION
from meterseal.cascadb.scope import Client, Ctx

_PLACES = 30


def _round(value: Any, digits: Any = 0) -> float | None:
    number = sv.to_number(value)
    if number is None:
        return None
    # as SQLite's, at most 30 places (10 ** a remote client's 10**9 held the GIL for hours)
    places = max(-_PLACES, min(_PLACES, int(sv.to_number(digits) or 0)))
    scaled = float(number) * 10**places
    rounded = math.floor(abs(scaled) + 0.5) * (1 if scaled >= 0 else -1)
    return float(rounded / 10**places)


def _substr(value: Any, start: Any, length: Any = None) -> Any:
    if value is None or start is None:
        return None
    text = value if isinstance(value, bytes) else sv.text_of(value)
    begin = int(sv.to_number(start) or 0)
    begin = begin - 1 if begin > 0 else (len(text) + begin if begin < 0 else 0)
    if length is None:
        return text[max(begin, 0) :]
    end = begin + int(sv.to_number(length) or 0)
    return text[max(begin, 0) : max(end, 0)]


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def chosen(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        return pick(args, key=sv.sort_key)

    return chosen


def _coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": lambda v: None if v is None else abs(sv.to_number(v)),  # type: ignore[arg-type]
    "coalesce": _coalesce,
    "ifnull": _coalesce,
    "nullif": lambda a, b: None if sv.compare(a, b) == 0 else a,
    "length": lambda v: None if v is None else len(v if isinstance(v, bytes) else sv.text_of(v)),
    "lower": lambda v: None if v is None else sv.text_of(v).lower(),
    "upper": lambda v: None if v is None else sv.text_of(v).upper(),
    "substring": _substr,
    "substr": _substr,
    "round": _round,
    "typeof": sv.type_name,
    "greatest": _extreme(max),
    "least": _extreme(min),
    "max": _extreme(max),
    "min": _extreme(min),
    "trim": lambda v: None if v is None else sv.text_of(v).strip(),
    "strposition": lambda a, b: (
        None if a is None or b is None else sv.text_of(a).find(sv.text_of(b)) + 1
    ),
    "instr": lambda a, b: None if a is None or b is None else sv.text_of(a).find(sv.text_of(b)) + 1,
    "replace": lambda a, b, c: (
        None if None in (a, b, c) else sv.text_of(a).replace(sv.text_of(b), sv.text_of(c))
    ),
}


def agg_name(node: exp.Expression) -> str | None:
    """The aggregate a call is (count, sum, ...), None for a scalar function."""
    if isinstance(node, exp.Count | exp.Sum | exp.Avg | exp.GroupConcat):
        return node.key.lower() if not isinstance(node, exp.GroupConcat) else "group_concat"
    if isinstance(node, exp.Max | exp.Min) and not node.expressions:
        return node.key.lower()
    if isinstance(node, exp.Anonymous) and node.name.lower() == "total":
        return "total"
    return None


def arguments(node: exp.Expression) -> list[exp.Expression]:
    """A function call's arguments, in order."""
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    found: list[exp.Expression] = []
    for name in node.arg_types:
        value = node.args.get(name)
        if isinstance(value, exp.Expression):
            found.append(value)
        elif isinstance(value, list):
            found += [e for e in value if isinstance(e, exp.Expression)]
    return found


def takes(function: Callable[..., Any], count: int) -> bool:
    """Whether `function` (of FUNCTIONS) can be called with `count` arguments."""
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    return True


def _client(what: str) -> Callable[[Client], str]:
    def told(client: Client) -> str:
        return str(getattr(client, what))

    return told


# PostgreSQL's functions of the server and of the session, answered over its protocol only:
# the SQLite dialect of the PEP 249 driver and the HTTP API has none of them
_SESSION: dict[type[exp.Expression], Callable[[Client], str]] = {
    exp.CurrentVersion: lambda client: VERSION,
    exp.CurrentSchema: lambda client: SCHEMA,
    exp.CurrentUser: _client("user"),
    exp.SessionUser: _client("user"),  # no SET ROLE, no SET SESSION AUTHORIZATION: the login
    exp.CurrentDatabase: _client("database"),
    exp.CurrentCatalog: _client("database"),
}
# pg_catalog.name(), as sqlglot reads name() on its own
_CATALOG: dict[str, type[exp.Expression]] = {
    "version": exp.CurrentVersion,
    "current_schema": exp.CurrentSchema,
    "current_database": exp.CurrentDatabase,
}


def session_function(node: exp.Expression) -> Callable[[Any, Ctx], Any] | None:
    """A closure computing `node` if it is one of PostgreSQL's functions of the server or the
    session (version(), pg_catalog.version(), current_schema(), current_database(),
    current_user, session_user), else None; it fails (0A000) outside the PostgreSQL protocol,
    which alone knows who asks."""
    kind: type[exp.Expression] = type(node)
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Anonymous):
        schema, call = node.this, node.expression
        name = call.name.lower()
        if not isinstance(schema, exp.Identifier) or schema.name.lower() != "pg_catalog":
            return None
        if name not in _CATALOG or call.expressions:
            return None
        kind = _CATALOG[name]
    elif node.args.get("this") is not None:
        return None  # current_schema(x): no PostgreSQL function; sqlite's current_schema('main')
    told = _SESSION.get(kind)
    if told is None:
        return None

    def asked(row: Any, ctx: Ctx) -> str:
        if ctx.client is None:
            raise NotSupportedError(
                f"CascaDB knows {node.sql(dialect='postgres').lower()} over the PostgreSQL "
                "protocol only"
            )
        return told(ctx.client)

    return asked
