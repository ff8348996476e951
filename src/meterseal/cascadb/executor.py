"""One parsed statement run against its statement's buffer: queries (planned once per parsed
statement while the dictionary holds), DDL and the writes, each giving a Result."""

from __future__ import annotations

import decimal
import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from meterseal.cascadb import dml
from meterseal.cascadb.catalog import Dictionary, Table
from meterseal.cascadb.conflict import returning
from meterseal.cascadb.errors import (
    Error,
    InternalError,
    NotSupportedError,
    NumericOverflow,
    ProgrammingError,
)
from meterseal.cascadb.expr import Ctx, Params, Row
from meterseal.cascadb.kv import OrderedKv
from meterseal.cascadb.parsing import QUERIES
from meterseal.cascadb.query import plan_query, refuse_with
from meterseal.cascadb.scope import Client

_log = logging.getLogger(__name__)


@dataclass
class Result:
    """What a statement returns: column names and rows (queries), rows affected (others)."""

    columns: list[str] | None = None
    rows: list[Row] = field(default_factory=list)
    rowcount: int = -1
    plan: list[str] = field(default_factory=list)
    command: str = ""  # what PostgreSQL's CommandComplete says: SELECT, INSERT, CREATE TABLE...
    lastrowid: int | None = None  # an INSERT's last rowid (or INTEGER PRIMARY KEY), as sqlite3's
    # PostgreSQL's dialect: each column's type OID when its expression tells it, else None
    # (told from the values over the PostgreSQL protocol); None for SQLite's
    types: list[int | None] | None = None


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
    *,
    postgres: bool = False,
    client: Client | None = None,
) -> tuple[Result, bool]:
    """Run one parsed statement against `kv` (a statement's buffer); whether it was DDL.

    `cache` holds committed table descriptors and `plans` SELECT plans made from them; both
    are None in a transaction that changed the dictionary. `postgres`: PostgreSQL's rules,
    not SQLite's: dividing by zero raises DivisionByZero (instead of giving NULL), and output
    columns are named as PostgreSQL names them (labels.py). `client`: who runs it over the
    PostgreSQL protocol (current_user, current_database()).
    """
    dictionary = Dictionary(kv, cache)
    ctx = Ctx(params, kv, zero_division=postgres, client=client)
    try:
        return _run(node, kv, ctx, dictionary, plans, postgres), dictionary.changed
    except (Error, decimal.DecimalException):  # (the session answers a decimal one)
        raise
    except OverflowError:  # a float past an integer's range, or an integer past a float's
        raise NumericOverflow("value out of range") from None
    except Exception as exc:
        # A fault of CascaDB's own (a case its evaluation misses): the statement fails, as
        # PostgreSQL's XX000 does, where the PostgreSQL protocol's session ended. Logged
        # without its message, which may hold the statement's values.
        where = traceback.extract_tb(exc.__traceback__)[-1]
        _log.error("internal error: %s at %s:%s", type(exc).__name__, where.filename, where.lineno)
        raise InternalError(f"internal error ({type(exc).__name__})") from None


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
    ctx: Ctx,
    dictionary: Dictionary,
    plans: Plans | None = None,
    postgres: bool = False,
) -> Result:
    numbering = Params()
    if isinstance(node, QUERIES):
        planned = _select(node, ctx.params, dictionary, plans)
        rows = list(planned.plan.rows(ctx))
        columns = planned.plan.labels if postgres else planned.plan.columns
        types = list(planned.plan.types) if postgres else None
        return Result(list(columns), rows, -1, planned.explained, "SELECT", types=types)
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
    refuse_with(node)
    writes = {exp.Insert: dml.insert, exp.Update: dml.update, exp.Delete: dml.delete}
    for kind_, handler in writes.items():
        if isinstance(node, kind_):
            table, written = handler(node, ctx, numbering, dictionary)  # type: ignore[operator]
            command = node.key.upper()
            last = _lastrowid(table, written, dictionary) if command == "INSERT" else None
            back = node.args.get("returning")
            if back is None:
                return Result(rowcount=len(written), command=command, lastrowid=last)
            columns, rows, types = returning(back, table, written, ctx, numbering, postgres)
            return Result(columns, rows, len(written), command=command, lastrowid=last, types=types)
    raise NotSupportedError(f"CascaDB does not support {node.key.upper()} statements")


def _lastrowid(table: Table, written: list[Row], dictionary: Dictionary) -> int | None:
    if not written:
        return None
    if table.rowid:
        return dictionary.last_rowid(table)
    value = written[-1][table.primary[0]] if len(table.primary) == 1 else None
    return value if isinstance(value, int) else None


def tables(kv: OrderedKv) -> list[Table]:
    """The tables of the store's data dictionary."""
    return Dictionary(kv).tables()
