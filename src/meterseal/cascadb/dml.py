"""CREATE/DROP TABLE and INDEX, INSERT, UPDATE and DELETE as key-value writes.

A row and its index entries are written, changed and removed together, in the statement's
write buffer, so the statement's one batch keeps every index in step with its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.access import Path, choose_path, read_keyed
from meterseal.cascadb.catalog import Column, Dictionary, ForeignKey, Index, Table
from meterseal.cascadb.conflict import check_references, on_conflict
from meterseal.cascadb.errors import (
    IntegrityError,
    NotNullViolation,
    NotSupportedError,
    ProgrammingError,
    UndefinedTable,
)
from meterseal.cascadb.expr import Compiler, Ctx, Params, Scope, Slot
from meterseal.cascadb.keys import END, Value, key_of
from meterseal.cascadb.kv import OrderedKv, get_many
from meterseal.cascadb.query import plan_query
from meterseal.cascadb.references import check_referenced, link, unlink
from meterseal.cascadb.select import conjuncts


def create_table(node: exp.Create, dictionary: Dictionary) -> None:
    """CREATE TABLE: its descriptor in the dictionary; UNIQUE constraints become indexes."""
    schema = node.this
    name = schema.this.name
    if dictionary.table(name) is not None:
        if node.args.get("exists"):
            return
        raise ProgrammingError(f"table {name} already exists")
    columns: list[Column] = []
    primary: list[str] = []
    uniques: list[list[str]] = []
    unique_names: dict[int, str] = {}  # a named UNIQUE constraint's index keeps its name
    references: list[tuple[list[str], exp.Reference]] = []
    items = list(schema.expressions)
    while items:
        item = items.pop(0)
        if isinstance(item, exp.Constraint):  # CONSTRAINT name …
            if any(isinstance(e, exp.UniqueColumnConstraint) for e in item.expressions):
                unique_names[len(uniques)] = item.name
            items[:0] = item.expressions
        elif isinstance(item, exp.Identifier):
            columns.append(Column(item.name, "", sv.affinity_of("")))
        elif isinstance(item, exp.ColumnDef):
            columns.append(_column(item, primary, uniques, references))
        elif isinstance(item, exp.PrimaryKey):
            primary += [_ident(e) for e in item.expressions]
        elif isinstance(item, exp.UniqueColumnConstraint):
            uniques.append([_ident(e) for e in item.this.expressions])
        elif isinstance(item, exp.ForeignKey):
            references.append(([_ident(e) for e in item.expressions], item.args["reference"]))
        else:
            raise NotSupportedError(f"CascaDB does not support {item.sql()!r} in CREATE TABLE")
    table = Table(dictionary.new_table_id(), name, tuple(columns), ())
    table = Table(table.id, name, tuple(columns), tuple(table.position(p) for p in primary))
    table = replace(table, foreign=tuple(_foreign(table, c, r) for c, r in references))
    for i, unique in enumerate(uniques):
        index = Index(
            dictionary.new_index_id(table),
            unique_names.get(i, f"{name}_unique_{i + 1}"),
            _positions(table, unique),
            unique=True,
            constraint=True,
        )
        table = dictionary.with_index(table, index)
    dictionary.save(link(table, dictionary))


# The one action CascaDB takes: refuse the parent's change (PostgreSQL's default, NO ACTION).
_ACTIONS = {
    f"ON {verb} {action}" for verb in ("DELETE", "UPDATE") for action in ("NO ACTION", "RESTRICT")
}


def _foreign(table: Table, columns: list[str], reference: exp.Reference) -> ForeignKey:
    for option in reference.args.get("options") or ():
        if str(option).upper() not in _ACTIONS:  # CASCADE, SET NULL, DEFERRABLE: not done
            raise NotSupportedError(f"CascaDB does not support {option} on a foreign key")
    parent = reference.this
    parent_table = parent.this if isinstance(parent, exp.Schema) else parent
    referred = [_ident(e) for e in parent.expressions] if isinstance(parent, exp.Schema) else []
    if referred and len(referred) != len(columns):
        raise ProgrammingError(f"foreign key of {table.name} names {len(referred)} columns")
    return ForeignKey(_positions(table, columns), parent_table.name, tuple(referred))


def _ident(node: exp.Expression) -> str:
    return node.name if not isinstance(node, exp.Ordered) else node.this.name


def _positions(table: Table, names: Sequence[str]) -> tuple[int, ...]:
    return tuple(table.position(n) for n in names)


def _column(
    item: exp.ColumnDef,
    primary: list[str],
    uniques: list[list[str]],
    references: list[tuple[list[str], exp.Reference]],
) -> Column:
    kind = item.args.get("kind")
    declared = kind.sql() if kind is not None else ""  # the generic spelling of any dialect
    not_null, default = False, None
    for constraint in item.constraints:
        what = constraint.kind
        if isinstance(what, exp.PrimaryKeyColumnConstraint):
            primary.append(item.name)
        elif isinstance(what, exp.NotNullColumnConstraint):
            not_null = not what.args.get("allow_null")
        elif isinstance(what, exp.DefaultColumnConstraint):
            default = Compiler(Scope([]), Params(), _no_subquery).compile(what.this)((), Ctx(()))
        elif isinstance(what, exp.UniqueColumnConstraint):
            uniques.append([item.name])
        elif isinstance(what, exp.Reference):
            references.append(([item.name], what))
    affinity = sv.affinity_of(declared)
    if affinity == sv.DECIMAL:
        sv.decimal_typmod(declared)  # NUMERIC(p, s) within PostgreSQL's bounds, or refused
    return Column(item.name, declared, affinity, not_null, sv.apply_affinity(default, affinity))


def _no_subquery(node: exp.Expression, scope: Scope) -> Any:
    raise NotSupportedError("a subquery cannot be a default")


def create_index(node: exp.Create, dictionary: Dictionary, kv: OrderedKv) -> None:
    """CREATE [UNIQUE] INDEX: the descriptor, then an entry for every row already stored."""
    index_node = node.this
    table = dictionary.require(index_node.args["table"].name)
    name = index_node.name
    if table.index_named(name) is not None or _index_anywhere(dictionary, name) is not None:
        if node.args.get("exists"):
            return
        raise ProgrammingError(f"index {name} already exists")
    params = index_node.args["params"]
    columns = _positions(table, [_ident(c) for c in params.args["columns"]])
    index = Index(dictionary.new_index_id(table), name, columns, bool(node.args.get("unique")))
    table = dictionary.with_index(table, index)
    dictionary.save(table)
    ctx = Ctx((), kv)
    for key, row in list(read_keyed(Path(index=None), table, kv, (), ctx)):
        _check_unique(table, index, row, kv)
        kv.put(table.index_key(index, row, key), b"")


def _index_anywhere(dictionary: Dictionary, name: str) -> tuple[Table, Index] | None:
    for table in dictionary.tables():
        index = table.index_named(name)
        if index is not None:
            return table, index
    return None


def drop(node: exp.Drop, dictionary: Dictionary, kv: OrderedKv) -> None:
    """DROP TABLE (its rows and index entries too) or DROP INDEX (its entries)."""
    kind = (node.args.get("kind") or "").upper()
    for target in node.args.get("tables") or [node.this]:
        if kind == "TABLE":
            table = dictionary.table(target.name)
            if table is None:
                if node.args.get("exists"):
                    continue
                raise UndefinedTable(f"no such table: {target.name}")
            unlink(table, dictionary)
            dictionary.remove(table)
        elif kind == "INDEX":
            found = _index_anywhere(dictionary, target.name)
            if found is None:
                if node.args.get("exists"):
                    continue
                raise ProgrammingError(f"no such index: {target.name}")
            table, index = found
            start = key_of(table.id, index.id, ())
            for key, _ in list(kv.scan(start, start + END)):
                kv.delete(key)
            dictionary.save(
                replace(table, indexes=tuple(i for i in table.indexes if i.id != index.id))
            )
        else:
            raise NotSupportedError(f"CascaDB does not support DROP {kind}")


def _check_unique(table: Table, index: Index, row: Sequence[Value], kv: OrderedKv) -> None:
    if not index.unique:
        return
    values = [row[i] for i in index.columns]
    if any(v is None for v in values):
        return
    prefix = key_of(table.id, index.id, values)
    if next(iter(kv.scan(prefix, prefix + END)), None) is not None:
        names = ", ".join(f"{table.name}.{table.columns[i].name}" for i in index.columns)
        raise IntegrityError(f"UNIQUE constraint failed: {names}")


def _complete(table: Table, row: list[Value]) -> tuple[Value, ...]:
    """`row` with affinities applied (DECIMAL(p, s) rounded to its scale) and NOT NULL
    checked."""
    for i, column in enumerate(table.columns):
        row[i] = sv.apply_affinity(row[i], column.affinity)
        typmod = sv.decimal_typmod(column.declared) if column.affinity == sv.DECIMAL else None
        if typmod is not None:
            row[i] = sv.fit_decimal(row[i], typmod)
        # An INTEGER PRIMARY KEY left NULL is numbered next (`_numbered`), NOT NULL or not.
        if (
            row[i] is None
            and not _rowid_alias(table, i)
            and (column.not_null or i in table.primary)
        ):
            raise NotNullViolation(f"NOT NULL constraint failed: {table.name}.{column.name}")
    return tuple(row)


def _rowid_alias(table: Table, position: int) -> bool:
    """Whether column `position` is an INTEGER PRIMARY KEY (SQLite numbers it when NULL)."""
    return table.primary == (position,) and table.columns[position].affinity == sv.INTEGER


def put_row(
    table: Table,
    row: tuple[Value, ...],
    kv: OrderedKv,
    dictionary: Dictionary,
    *,
    checked: bool = False,
) -> None:
    """Store a new row and its index entries; IntegrityError on a duplicate key.

    `checked`: the caller already made sure the key is new.
    """
    rowid = None
    if table.rowid:
        rowid = dictionary.last_rowid(table) + 1
        dictionary.set_last_rowid(table, rowid)
    key = table.row_key(row, rowid)
    if not table.rowid and not checked and kv.get(key) is not None:
        names = ", ".join(f"{table.name}.{table.columns[i].name}" for i in table.primary)
        raise IntegrityError(f"UNIQUE constraint failed: {names}")
    for index in table.indexes:
        _check_unique(table, index, row, kv)
    kv.put(key, table.encode_row(row))
    for index in table.indexes:
        kv.put(table.index_key(index, row, key), b"")


def remove_row(table: Table, key: bytes, row: Sequence[Value], kv: OrderedKv) -> None:
    """Remove a row and its index entries."""
    kv.delete(key)
    for index in table.indexes:
        kv.delete(table.index_key(index, row, key))


def insert(
    node: exp.Insert, ctx: Ctx, params: Params, dictionary: Dictionary
) -> tuple[Table, list[tuple[Value, ...]]]:
    """INSERT ... VALUES (...), (...) or INSERT ... SELECT [ON CONFLICT]; the rows written."""
    if node.args.get("alternative"):
        raise NotSupportedError("CascaDB does not support INSERT OR …; use ON CONFLICT")
    target = node.this
    table_node = target.this if isinstance(target, exp.Schema) else target
    table = dictionary.require(table_node.name)
    if isinstance(target, exp.Schema):
        positions = _positions(table, [e.name for e in target.expressions])
    else:
        positions = tuple(range(len(table.columns)))
    source = node.expression
    rows: Iterable[Sequence[Any]]
    if isinstance(source, exp.Values):
        compiler = Compiler(
            Scope([]), params, lambda n, s: plan_query(n, s, params, dictionary.require)
        )
        compiled = [[compiler.compile(v) for v in t.expressions] for t in source.expressions]
        rows = ([f((), ctx) for f in fns] for fns in compiled)
    else:
        rows = list(plan_query(source, None, params, dictionary.require).rows(ctx))
    complete: list[tuple[Value, ...]] = []
    for values in rows:
        if len(values) != len(positions):
            raise ProgrammingError(f"{len(values)} values for {len(positions)} columns")
        given: list[Value] = [c.default for c in table.columns]
        for position, value in zip(positions, values, strict=True):
            given[position] = value
        complete.append(_numbered(table, _complete(table, given), ctx.kv, dictionary))
    conflict = node.args.get("conflict")
    if conflict is not None:
        writes = (put_row, remove_row, _complete)
        return table, on_conflict(conflict, table, complete, ctx, params, dictionary, writes)
    if not table.rowid:  # every new key checked against the store in one call
        keys = [table.row_key(row) for row in complete]
        if len(set(keys)) < len(keys) or any(v is not None for v in get_many(ctx.kv, keys)):
            names = ", ".join(f"{table.name}.{table.columns[i].name}" for i in table.primary)
            raise IntegrityError(f"UNIQUE constraint failed: {names}")
    for row in complete:
        put_row(table, row, ctx.kv, dictionary, checked=True)
    # After the writes, as at a statement's end: a row may name one the statement inserted.
    check_references(table, complete, ctx.kv, dictionary)
    return table, complete


def _numbered(
    table: Table, row: tuple[Value, ...], kv: OrderedKv, dictionary: Dictionary
) -> tuple[Value, ...]:
    """An INTEGER PRIMARY KEY left NULL gets the next number, as SQLite's rowid."""
    if len(table.primary) != 1 or not _rowid_alias(table, table.primary[0]):
        return row
    position = table.primary[0]
    last = dictionary.last_rowid(table)
    if row[position] is None:
        changed = list(row)
        changed[position] = last + 1
        row = tuple(changed)
    value = row[position]
    if isinstance(value, int) and value > last:
        dictionary.set_last_rowid(table, value)
    return row


def _matching(
    table: Table, where: exp.Expression | None, ctx: Ctx, params: Params, dictionary: Dictionary
) -> tuple[Scope, list[tuple[bytes, tuple[Value, ...]]]]:
    alias = table.name.lower()
    scope = Scope([Slot(alias, c.name.lower(), c.affinity) for c in table.columns])
    subquery = lambda n, s: plan_query(n, s, params, dictionary.require)  # noqa: E731
    parts = conjuncts(where.this if where is not None else None)
    path = choose_path(parts, alias, table, Compiler(Scope([]), params, subquery))
    compiler = Compiler(scope, params, subquery)
    checks = [compiler.compile(p) for p in parts]
    found = [
        (key, row)
        for key, row in read_keyed(path, table, ctx.kv, (), ctx)
        if all(sv.truth(c(row, ctx)) for c in checks)
    ]
    return scope, found


def update(
    node: exp.Update, ctx: Ctx, params: Params, dictionary: Dictionary
) -> tuple[Table, list[tuple[Value, ...]]]:
    """UPDATE: every matching row rewritten with its index entries; the rows as changed."""
    table = dictionary.require(node.this.name)
    scope, found = _matching(table, node.args.get("where"), ctx, params, dictionary)
    compiler = Compiler(scope, params, lambda n, s: plan_query(n, s, params, dictionary.require))
    sets = [(table.position(a.this.name), compiler.compile(a.expression)) for a in node.expressions]
    changed = []
    for key, row in found:
        values = list(row)
        for position, fn in sets:
            values[position] = fn(row, ctx)
        changed.append((key, _complete(table, values)))
    for key, row in found:
        remove_row(table, key, row, ctx.kv)
    for (old_key, _), (_, new) in zip(found, changed, strict=True):
        if table.rowid:
            for index in table.indexes:
                _check_unique(table, index, new, ctx.kv)
            ctx.kv.put(old_key, table.encode_row(new))
            for index in table.indexes:
                ctx.kv.put(table.index_key(index, new, old_key), b"")
        else:
            put_row(table, new, ctx.kv, dictionary)
    if table.foreign:
        check_references(table, [new for _, new in changed], ctx.kv, dictionary)
    check_referenced(
        table,
        [(row, new) for (_, row), (_, new) in zip(found, changed, strict=True)],
        ctx.kv,
        dictionary,
    )
    return table, [new for _, new in changed]


def delete(
    node: exp.Delete, ctx: Ctx, params: Params, dictionary: Dictionary
) -> tuple[Table, list[tuple[Value, ...]]]:
    """DELETE: every matching row and its index entries; the rows removed (ForeignKeyViolation
    if a child row still refers to one)."""
    table = dictionary.require(node.this.name)
    _, found = _matching(table, node.args.get("where"), ctx, params, dictionary)
    for key, row in found:
        remove_row(table, key, row, ctx.kv)
    check_referenced(table, [(row, None) for _, row in found], ctx.kv, dictionary)
    return table, [row for _, row in found]
