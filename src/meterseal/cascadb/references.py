"""Foreign keys seen from the parent: a parent row still named by a child row stays.

PostgreSQL's default action (NO ACTION): at the end of a DELETE or UPDATE of a parent table,
every referred value the statement removed must either be back in the parent (another row,
or the same row, holds it again) or be named by no child row; else the statement fails with
SQLSTATE 23503. DROP TABLE of a parent that another table refers to fails (2BP01). A parent's
descriptor lists the tables that refer to it (`Table.referenced_by`), so a statement on a
table nobody refers to reads no other descriptor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from meterseal.cascadb import values as sv
from meterseal.cascadb.catalog import PRIMARY, Dictionary, ForeignKey, Table
from meterseal.cascadb.errors import ForeignKeyViolation, ProgrammingError
from meterseal.cascadb.keys import END, Value, key_of
from meterseal.cascadb.kv import OrderedKv

Row = tuple[Value, ...]


class DependentObjects(ProgrammingError):
    """DROP TABLE of a table that another table's foreign key refers to."""

    sqlstate = "2BP01"


def parent_prefix(parent: Table, positions: tuple[int, ...], values: Sequence[Value]) -> bytes:
    """The key prefix of the parent rows holding `values` in `positions` (its key or a
    unique index); ProgrammingError when they are neither."""
    if positions == parent.primary:
        return key_of(parent.id, PRIMARY, values)
    for index in parent.indexes:
        if index.unique and index.columns == positions:
            return key_of(parent.id, index.id, values)
    names = ", ".join(parent.columns[p].name for p in positions)
    raise ProgrammingError(f"foreign key mismatch: {parent.name}({names}) is not a key")


def referred_positions(parent: Table, foreign: ForeignKey) -> tuple[int, ...]:
    """The parent's columns (by position) that `foreign` names: its own list or the key."""
    if foreign.parent_columns:
        return tuple(parent.position(n) for n in foreign.parent_columns)
    return parent.primary


def check_referenced(
    parent: Table,
    changes: Sequence[tuple[Row, Row | None]],
    kv: OrderedKv,
    dictionary: Dictionary,
) -> None:
    """ForeignKeyViolation if a parent row the statement removed (new None) or changed
    still has children; run after the statement's writes, which `kv` holds."""
    if not changes or parent.referenced_by == ():
        return
    if parent.referenced_by is None:  # an older descriptor: found once, then kept
        parent = replace(parent, referenced_by=referrers(parent, dictionary))
        dictionary.save(parent)
    for child_name in parent.referenced_by or ():
        child = parent if child_name.lower() == parent.name.lower() else None
        child = child or dictionary.table(child_name)
        if child is None:
            continue
        for foreign in child.foreign:
            if foreign.parent.lower() == parent.name.lower():
                _check_one(parent, child, foreign, changes, kv)


def _check_one(
    parent: Table,
    child: Table,
    foreign: ForeignKey,
    changes: Sequence[tuple[Row, Row | None]],
    kv: OrderedKv,
) -> None:
    positions = referred_positions(parent, foreign)
    gone: dict[tuple[object, ...], list[Value]] = {}
    for old, new in changes:
        values = [old[p] for p in positions]
        if any(v is None for v in values):
            continue
        if new is not None and all(sv.compare(old[p], new[p]) == 0 for p in positions):
            continue  # the referred values did not change
        gone[tuple(sv.hash_key(v) for v in values)] = values
    # NO ACTION: a value that another row of the parent holds again names a row still.
    missing = [
        values
        for values in gone.values()
        if next(iter(kv.scan(*_range(parent_prefix(parent, positions, values)))), None) is None
    ]
    if missing and _children_of(child, foreign, missing, kv):
        columns = ", ".join(child.columns[i].name for i in foreign.columns)
        raise ForeignKeyViolation(
            f"update or delete on table {parent.name} violates the foreign key of "
            f"{child.name}({columns}): a row of {child.name} still refers to it"
        )


def _range(prefix: bytes) -> tuple[bytes, bytes]:
    return prefix, prefix + END


def _children_of(
    child: Table, foreign: ForeignKey, missing: list[list[Value]], kv: OrderedKv
) -> bool:
    """Whether a row of `child` holds one of the `missing` values in its foreign key's columns
    (a prefix of its key or of an index is a scan per value; else one scan of the table)."""
    typed = [
        [
            sv.apply_affinity(v, child.columns[c].affinity)
            for v, c in zip(values, foreign.columns, strict=True)
        ]
        for values in missing
    ]
    width = len(foreign.columns)
    index_id = PRIMARY if child.primary[:width] == foreign.columns else None
    for index in child.indexes:
        if index_id is None and index.columns[:width] == foreign.columns:
            index_id = index.id
    if index_id is not None:
        return any(
            next(iter(kv.scan(*_range(key_of(child.id, index_id, values)))), None) is not None
            for values in typed
        )
    wanted = {tuple(sv.hash_key(v) for v in values) for values in typed}
    for key, raw in kv.scan(*_range(child.rows_prefix())):
        row = child.decode_row(key, raw)
        if tuple(sv.hash_key(row[c]) for c in foreign.columns) in wanted:
            return True
    return False


def referrers(table: Table, dictionary: Dictionary) -> tuple[str, ...]:
    """The tables whose foreign keys name `table` (its list, else found in every descriptor)."""
    if table.referenced_by is not None:
        return table.referenced_by
    name = table.name.lower()
    return tuple(t.name for t in dictionary.tables() if _refers(t, name))


def link(table: Table, dictionary: Dictionary) -> Table:
    """A new table's descriptor with the tables referring to it listed, each parent's
    descriptor saved with it listed (CREATE TABLE: the one time every descriptor is read)."""
    name = table.name.lower()
    children = [t.name for t in dictionary.tables() if _refers(t, name)]
    if _refers(table, name):
        children.append(table.name)
    for parent_name in {f.parent.lower() for f in table.foreign} - {name}:
        parent = dictionary.table(parent_name)
        known = None if parent is None else parent.referenced_by
        if parent is not None and known is not None and table.name not in known:
            dictionary.save(replace(parent, referenced_by=(*known, table.name)))
    return replace(table, referenced_by=tuple(children))


def unlink(table: Table, dictionary: Dictionary) -> None:
    """Before DROP TABLE: DependentObjects if another table refers to `table`; else its
    parents no longer list it."""
    others = [
        n
        for n in referrers(table, dictionary)
        if n.lower() != table.name.lower() and _still_refers(dictionary.table(n), table)
    ]
    if others:
        raise DependentObjects(
            f"cannot drop table {table.name} because table {others[0]} refers to it"
        )
    for parent_name in {f.parent.lower() for f in table.foreign} - {table.name.lower()}:
        parent = dictionary.table(parent_name)
        if parent is not None and parent.referenced_by is not None:
            kept = tuple(n for n in parent.referenced_by if n.lower() != table.name.lower())
            dictionary.save(replace(parent, referenced_by=kept))


def _refers(table: Table, parent_name: str) -> bool:
    return any(f.parent.lower() == parent_name for f in table.foreign)


def _still_refers(child: Table | None, parent: Table) -> bool:
    return child is not None and _refers(child, parent.name.lower())
