"""The data dictionary (tables, columns, keys, indexes) kept in the store, and the row layout.

Keys (keys.py encodes each part): a row is (table id, 1, primary-key values) -> the CBOR list
of its other columns; an index entry is (table id, index id, indexed values, primary-key
values) -> empty. The dictionary is table 0: (0, 1, table name) -> the table's CBOR
descriptor, (0, 2) -> the last table id given, (0, 3, table id) -> the last rowid given.
A table without a declared primary key gets SQLite's hidden rowid as its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cached_property
from typing import Any

import cbor2

from meterseal.cascadb.errors import InternalError, UndefinedColumn, UndefinedTable
from meterseal.cascadb.keys import Value, decode_key, key_of, table_prefix
from meterseal.cascadb.kv import OrderedKv
from meterseal.cascadb.values import DECIMAL, decimal_typmod

PRIMARY = 1  # the index id of a table's rows
_DICTIONARY, _TABLES, _LAST_TABLE, _LAST_ROWID = 0, 1, 2, 3


@dataclass(frozen=True)
class Column:
    """One column: its name, declared type, affinity, NOT NULL and default."""

    name: str
    declared: str
    affinity: str
    not_null: bool = False
    default: Value = None


@dataclass(frozen=True)
class Index:
    """A secondary index over some columns (by position) of its table."""

    id: int
    name: str
    columns: tuple[int, ...]
    unique: bool = False
    constraint: bool = False  # made by a UNIQUE constraint of CREATE TABLE, not CREATE INDEX


@dataclass(frozen=True)
class ForeignKey:
    """Columns (by position) whose values must name a row of `parent` (NULL: no row needed)."""

    columns: tuple[int, ...]
    parent: str
    parent_columns: tuple[str, ...]  # the parent's referred columns (empty: its primary key)


@dataclass(frozen=True)
class Table:
    """A table's descriptor: columns, primary key (positions; empty: hidden rowid), indexes."""

    id: int
    name: str
    columns: tuple[Column, ...]
    primary: tuple[int, ...]
    indexes: tuple[Index, ...] = field(default=())
    foreign: tuple[ForeignKey, ...] = field(default=())
    # Tables whose foreign keys name it; None: not known (a descriptor from before the list
    # was kept), found and stored by references.py the first time it is needed.
    referenced_by: tuple[str, ...] | None = field(default=())

    @property
    def rowid(self) -> bool:
        """Whether rows are keyed by a hidden rowid."""
        return not self.primary

    def position(self, name: str) -> int:
        """The position of column `name` (case-insensitive)."""
        lowered = name.lower()
        for i, column in enumerate(self.columns):
            if column.name.lower() == lowered:
                return i
        raise UndefinedColumn(f"no such column: {self.name}.{name}")

    def rows_prefix(self) -> bytes:
        """The prefix of every row key of the table."""
        return table_prefix(self.id, PRIMARY)

    def row_key(self, row: Sequence[Value], rowid: int | None = None) -> bytes:
        """The key of `row` (rowid tables: of `rowid`)."""
        if self.rowid:
            return key_of(self.id, PRIMARY, (rowid,))
        return key_of(self.id, PRIMARY, [row[i] for i in self.primary])

    def index_key(self, index: Index, row: Sequence[Value], row_key: bytes) -> bytes:
        """The key of `row`'s entry in `index` (the row's key values make it unique)."""
        suffix = row_key[len(self.rows_prefix()) :]
        return key_of(self.id, index.id, [row[i] for i in index.columns]) + suffix

    def encode_row(self, row: Sequence[Value]) -> bytes:
        """The stored value of `row`: its columns outside the key, as CBOR."""
        keyed = set(self.primary)
        return cbor2.dumps([v for i, v in enumerate(row) if i not in keyed])

    def decode_row(self, key: bytes, value: bytes) -> tuple[Value, ...]:
        """The whole row from its key and stored value."""
        rest: list[Value] = cbor2.loads(value)
        if self.rowid:
            return tuple(rest)
        keyed, _ = decode_key(key[len(self.rows_prefix()) :], len(self.primary))
        row: list[Value] = [None] * len(self.columns)
        for position, found in zip(self.primary, keyed, strict=True):
            row[position] = found
        for position, exponent in self._key_scales:
            found = row[position]
            if isinstance(found, Decimal):  # the key keeps no trailing zeros: the scale back
                row[position] = found.quantize(exponent)
        others = iter(rest)
        primary = set(self.primary)
        for i in range(len(row)):
            if i not in primary:
                row[i] = next(others)
        return tuple(row)

    @cached_property
    def _key_scales(self) -> list[tuple[int, Decimal]]:
        """(position, 10^-scale) of each key column declared DECIMAL(p, s)."""
        scales = []
        for position in self.primary:
            column = self.columns[position]
            typmod = decimal_typmod(column.declared) if column.affinity == DECIMAL else None
            if typmod is not None:
                scales.append((position, Decimal(1).scaleb(-typmod[1])))
        return scales

    def key_suffix_of_index_entry(self, index: Index, key: bytes) -> bytes:
        """The row key that an entry of `index` points at."""
        prefix = table_prefix(self.id, index.id)
        _, offset = decode_key(key[len(prefix) :], len(index.columns))
        return self.rows_prefix() + key[len(prefix) + offset :]

    def index_named(self, name: str) -> Index | None:
        """The index called `name`, if any."""
        return next((i for i in self.indexes if i.name.lower() == name.lower()), None)

    def to_cbor(self) -> bytes:
        """The descriptor as stored in the dictionary."""
        return cbor2.dumps(
            {
                "id": self.id,
                "name": self.name,
                "columns": [
                    [c.name, c.declared, c.affinity, c.not_null, c.default] for c in self.columns
                ],
                "primary": list(self.primary),
                "indexes": [
                    [i.id, i.name, list(i.columns), i.unique, i.constraint] for i in self.indexes
                ],
                "foreign": [
                    [list(f.columns), f.parent, list(f.parent_columns)] for f in self.foreign
                ],
                "referenced_by": None if self.referenced_by is None else list(self.referenced_by),
            }
        )

    @classmethod
    def from_cbor(cls, raw: bytes) -> Table:
        """The descriptor read back from the dictionary."""
        try:
            data: dict[str, Any] = cbor2.loads(raw)
            return cls(
                id=data["id"],
                name=data["name"],
                columns=tuple(Column(*c) for c in data["columns"]),
                primary=tuple(data["primary"]),
                indexes=tuple(
                    Index(i[0], i[1], tuple(i[2]), i[3], bool(i[4:5] and i[4]))
                    for i in data["indexes"]
                ),
                foreign=tuple(
                    ForeignKey(tuple(f[0]), f[1], tuple(f[2])) for f in data.get("foreign", ())
                ),
                referenced_by=_names(data.get("referenced_by")),
            )
        except (KeyError, TypeError, ValueError, cbor2.CBORDecodeError) as exc:
            raise InternalError(f"damaged table descriptor: {exc}") from exc


def _names(raw: list[str] | None) -> tuple[str, ...] | None:
    return None if raw is None else tuple(raw)


def _table_key(name: str) -> bytes:
    return key_of(_DICTIONARY, _TABLES, (name.lower(),))


class Dictionary:
    """Reads and writes table descriptors and counters in an OrderedKv."""

    def __init__(self, kv: OrderedKv, cache: dict[str, Table] | None = None) -> None:
        self.kv = kv
        self.cache = cache  # committed descriptors by lowercase name (None: read every time)
        self.changed = False  # whether this statement changed the dictionary

    def table(self, name: str) -> Table | None:
        """The descriptor of table `name`, None if there is none."""
        if self.cache is not None and name.lower() in self.cache:
            return self.cache[name.lower()]
        raw = self.kv.get(_table_key(name))
        table = None if raw is None else Table.from_cbor(raw)
        if table is not None and self.cache is not None:
            self.cache[name.lower()] = table
        return table

    def require(self, name: str) -> Table:
        """The descriptor of table `name`; ProgrammingError if there is none."""
        table = self.table(name)
        if table is None:
            raise UndefinedTable(f"no such table: {name}")
        return table

    def tables(self) -> list[Table]:
        """Every table, by name."""
        prefix = table_prefix(_DICTIONARY, _TABLES)
        return [Table.from_cbor(v) for _, v in self.kv.scan(prefix, prefix + b"\xff")]

    def save(self, table: Table) -> None:
        """Store `table`'s descriptor."""
        self.changed = True
        self.cache = None  # it holds committed descriptors: this statement reads its own now
        self.kv.put(_table_key(table.name), table.to_cbor())

    def remove(self, table: Table) -> None:
        """Remove `table`'s descriptor, its rows, its index entries and its rowid counter."""
        self.changed = True
        self.cache = None
        start = key_of(table.id, 0, ())
        for key, _ in list(self.kv.scan(start, key_of(table.id + 1, 0, ()))):
            self.kv.delete(key)
        self.kv.delete(_table_key(table.name))
        self.kv.delete(key_of(_DICTIONARY, _LAST_ROWID, (table.id,)))

    def new_table_id(self) -> int:
        """The next table id (table ids start at 1; 0 is the dictionary)."""
        return self._bump(key_of(_DICTIONARY, _LAST_TABLE, ()), 1)

    def new_index_id(self, table: Table) -> int:
        """The next index id of `table` (1 is its rows)."""
        return max((i.id for i in table.indexes), default=PRIMARY) + 1

    def with_index(self, table: Table, index: Index) -> Table:
        """`table` with `index` added."""
        return replace(table, indexes=(*table.indexes, index))

    def last_rowid(self, table: Table) -> int:
        """The last rowid given in `table` (0: none)."""
        raw = self.kv.get(key_of(_DICTIONARY, _LAST_ROWID, (table.id,)))
        return 0 if raw is None else int(cbor2.loads(raw))

    def set_last_rowid(self, table: Table, rowid: int) -> None:
        """Record the last rowid given in `table`."""
        self.kv.put(key_of(_DICTIONARY, _LAST_ROWID, (table.id,)), cbor2.dumps(rowid))

    def _bump(self, key: bytes, first: int) -> int:
        raw = self.kv.get(key)
        value = first if raw is None else int(cbor2.loads(raw)) + 1
        self.kv.put(key, cbor2.dumps(value))
        return value
