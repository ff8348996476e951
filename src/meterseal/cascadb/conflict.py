"""INSERT … ON CONFLICT (DO NOTHING, DO UPDATE SET … WHERE …), foreign keys and RETURNING.

ON CONFLICT follows SQLite (and PostgreSQL, but for one case): the conflict target is the
primary key or a unique index; rows go in one after another, so a row conflicting with one
inserted earlier by the same statement is skipped (DO NOTHING) or updates it (DO UPDATE;
PostgreSQL refuses that with "cannot affect row a second time"). In DO UPDATE, `excluded.c`
is the proposed row's column and an unqualified column is the stored row's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.catalog import Dictionary, Index, Table
from meterseal.cascadb.errors import ForeignKeyViolation, NotSupportedError, ProgrammingError
from meterseal.cascadb.expr import Compiler, Ctx, Fn, Params, Scope, Slot
from meterseal.cascadb.keys import END, Value, key_of
from meterseal.cascadb.kv import OrderedKv, get_many
from meterseal.cascadb.labels import postgres_name
from meterseal.cascadb.query import plan_query
from meterseal.cascadb.references import check_referenced, parent_prefix, referred_positions
from meterseal.cascadb.result_types import postgres_type

Row = tuple[Value, ...]
PutRow = Callable[..., None]  # dml.put_row(table, row, kv, dictionary, *, checked)
RemoveRow = Callable[[Table, bytes, Sequence[Value], OrderedKv], None]
Complete = Callable[[Table, list[Value]], Row]
_ANY = None  # no conflict target: a conflict on the primary key or any unique index


def check_references(
    table: Table, rows: Sequence[Row], kv: OrderedKv, dictionary: Dictionary
) -> None:
    """IntegrityError unless every foreign key of `rows` names a stored parent row."""
    for foreign in table.foreign:
        parent = dictionary.require(foreign.parent)
        positions = referred_positions(parent, foreign)
        wanted: dict[bytes, None] = {}
        for row in rows:
            values = [row[i] for i in foreign.columns]
            if any(v is None for v in values):
                continue
            # The parent's affinity, as the parent row stored its values.
            typed = [
                sv.apply_affinity(v, parent.columns[p].affinity)
                for v, p in zip(values, positions, strict=True)
            ]
            wanted[parent_prefix(parent, positions, typed)] = None
        if not wanted:
            continue
        if positions == parent.primary:
            missing = any(v is None for v in get_many(kv, list(wanted)))
        else:
            missing = any(next(iter(kv.scan(p, p + END)), None) is None for p in wanted)
        if missing:
            columns = ", ".join(table.columns[i].name for i in foreign.columns)
            raise ForeignKeyViolation(
                f"FOREIGN KEY constraint failed: {table.name}({columns}) -> {parent.name}"
            )


def _target(node: exp.OnConflict, table: Table) -> str | Index | None:
    if node.args.get("constraint") or node.args.get("index_predicate"):
        raise NotSupportedError("CascaDB's ON CONFLICT names its target by columns only")
    keys = node.args.get("conflict_keys") or []
    if not keys:
        return _ANY
    names = [(k.this if isinstance(k, exp.Ordered) else k).name for k in keys]
    positions = {table.position(n) for n in names}
    if not table.rowid and positions == set(table.primary):
        return "primary"
    for index in table.indexes:
        if index.unique and positions == set(index.columns):
            return index
    raise ProgrammingError("ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint")


def _conflicting(table: Table, target: str | Index | None, row: Row, kv: OrderedKv) -> bytes | None:
    """The key of the stored row that `row` conflicts with on `target`, if any."""
    if target in (_ANY, "primary") and not table.rowid:
        key = table.row_key(row)
        if kv.get(key) is not None:
            return key
    for index in table.indexes:
        if not index.unique or target not in (_ANY, index):
            continue
        values = [row[i] for i in index.columns]
        if any(v is None for v in values):
            continue
        prefix = key_of(table.id, index.id, values)
        entry = next(iter(kv.scan(prefix, prefix + END)), None)
        if entry is not None:
            return table.key_suffix_of_index_entry(index, entry[0])
    return None


def on_conflict(
    node: exp.OnConflict,
    table: Table,
    rows: Sequence[Row],
    ctx: Ctx,
    params: Params,
    dictionary: Dictionary,
    writes: tuple[PutRow, RemoveRow, Complete],
) -> list[Row]:
    """Insert `rows` under the ON CONFLICT clause `node`; the rows inserted or updated."""
    action = node.args.get("action")
    verb = action.name.upper() if isinstance(action, exp.Var) else ""
    if node.args.get("duplicate"):
        raise NotSupportedError("CascaDB does not support ON DUPLICATE KEY")
    target = _target(node, table)
    if verb == "DO NOTHING":
        return _do_nothing(table, target, rows, ctx.kv, dictionary, writes[0])
    if verb == "DO UPDATE":
        if target is _ANY:
            raise ProgrammingError("ON CONFLICT DO UPDATE needs a conflict target")
        return _do_update(node, table, target, rows, ctx, params, dictionary, writes)
    raise NotSupportedError(f"CascaDB does not support ON CONFLICT {verb}")


def _do_nothing(
    table: Table,
    target: str | Index | None,
    rows: Sequence[Row],
    kv: OrderedKv,
    dictionary: Dictionary,
    put_row: PutRow,
) -> list[Row]:
    fresh = list(rows)
    checked = not table.rowid and target in (_ANY, "primary")
    if checked:
        # The common case (a batch of new keys): every key looked up in one call.
        keys = [table.row_key(r) for r in rows]
        stored = get_many(kv, keys)
        seen: set[bytes] = set()
        fresh = []
        for row, key, value in zip(rows, keys, stored, strict=True):
            if value is None and key not in seen:
                seen.add(key)
                fresh.append(row)
    check_references(table, fresh, kv, dictionary)
    done: list[Row] = []
    unique = any(i.unique for i in table.indexes)
    for row in fresh:
        if unique and _conflicting(table, target, row, kv) is not None:
            continue
        put_row(table, row, kv, dictionary, checked=checked)
        done.append(row)
    return done


def _do_update(
    node: exp.OnConflict,
    table: Table,
    target: str | Index,
    rows: Sequence[Row],
    ctx: Ctx,
    params: Params,
    dictionary: Dictionary,
    writes: tuple[PutRow, RemoveRow, Complete],
) -> list[Row]:
    put_row, remove_row, complete = writes
    alias = table.name.lower()
    slots = [Slot(alias, c.name.lower(), c.affinity) for c in table.columns]
    scope = Scope([*slots, *(Slot("excluded", s.name, s.affinity) for s in slots)])
    compiler = Compiler(scope, params, lambda n, s: plan_query(n, s, params, dictionary.require))
    sets = [
        (table.position(a.this.name), compiler.compile(_qualified(a.expression, alias)))
        for a in node.expressions
    ]
    where = node.args.get("where")
    check = compiler.compile(_qualified(where.this, alias)) if where is not None else None
    done: list[Row] = []
    for row in rows:
        key = _conflicting(table, target, row, ctx.kv)
        if key is None:
            check_references(table, [row], ctx.kv, dictionary)
            put_row(table, row, ctx.kv, dictionary)
            done.append(row)
            continue
        raw = ctx.kv.get(key)
        assert raw is not None, "a conflicting key names a stored row"
        old = table.decode_row(key, raw)
        both = (*old, *row)
        if check is not None and not sv.truth(check(both, ctx)):
            continue
        values = list(old)
        for position, fn in sets:
            values[position] = fn(both, ctx)
        new = complete(table, values)
        check_references(table, [new], ctx.kv, dictionary)
        remove_row(table, key, old, ctx.kv)
        put_row(table, new, ctx.kv, dictionary)
        check_referenced(table, [(old, new)], ctx.kv, dictionary)
        done.append(new)
    return done


def _qualified(node: exp.Expression, alias: str) -> exp.Expression:
    """`node` with its unqualified columns naming the stored row (SQLite's reading)."""
    copy = node.copy()
    for column in copy.find_all(exp.Column):
        if not column.table:
            column.set("table", exp.to_identifier(alias))
    return copy


def returning(
    node: exp.Returning,
    table: Table,
    rows: Sequence[Row],
    ctx: Ctx,
    params: Params,
    postgres: bool = False,
) -> tuple[list[str], list[Row], list[int | None] | None]:
    """RETURNING's column names (`postgres`: by PostgreSQL's rule), one row per written row,
    and (`postgres`) the types its expressions tell (result_types.py)."""
    alias = table.name.lower()
    scope = Scope([Slot(alias, c.name.lower(), c.affinity) for c in table.columns])
    compiler = Compiler(scope, params, _no_subquery)
    names: list[str] = []
    fns: list[Fn] = []
    types: list[int | None] = []
    for item in node.expressions:
        star = isinstance(item, exp.Star) or (
            isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
        )
        if star:
            for position, column in enumerate(table.columns):
                names.append(column.name)
                fns.append(_column_at(position))
                types.append(None)
            continue
        if postgres:
            names.append(postgres_name(item))
        else:
            names.append(item.alias if isinstance(item, exp.Alias) else item.alias_or_name)
        fns.append(compiler.compile(item.this if isinstance(item, exp.Alias) else item))
        types.append(postgres_type(item))
    written = [tuple(fn(row, ctx) for fn in fns) for row in rows]
    return names, written, types if postgres else None


def _column_at(position: int) -> Fn:
    return lambda row, _ctx: row[position]


def _no_subquery(node: exp.Expression, scope: Scope) -> NoReturn:
    raise NotSupportedError("CascaDB does not support subqueries in RETURNING")
