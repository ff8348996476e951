"""Access paths: which key ranges of a table's rows or of one index answer a set of conditions.

Equality on the leading columns of the primary key (or of an index) makes a key prefix; then
one range (<, <=, >, >=, BETWEEN, LIKE 'prefix%' without letters) or an IN list on the next
column narrows it. Every condition is still checked on the rows found (the range only chooses
which keys to read), so a value the range cannot encode costs a wider read, never a wrong row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.catalog import PRIMARY, Index, Table
from meterseal.cascadb.errors import ProgrammingError
from meterseal.cascadb.expr import Compiler, Ctx, Fn, Row, Scope
from meterseal.cascadb.keys import END, NULL_TAG, TEXT_TAG, encode_value, table_prefix
from meterseal.cascadb.kv import OrderedKv, get_many

Bound = tuple[Fn, bool]  # (value, inclusive)


@dataclass
class Path:
    """Key ranges of one index (None: the rows) from equalities, then one range or IN list."""

    index: Index | None
    eq: list[Fn] = field(default_factory=list)
    low: Bound | None = None
    high: Bound | None = None
    among: list[Fn] | None = None  # IN (...) on the column after the equalities
    like: list[str] | None = None  # LIKE prefixes (its case spellings) on that column
    described: list[exp.Expression] = field(default_factory=list)

    @property
    def score(self) -> int:
        """How narrow the path is: two per equality, one for a range or IN list."""
        ranged = self.low is not None or self.high is not None or self.among or self.like
        return 2 * len(self.eq) + (1 if ranged else 0)

    def explain(self, table: Table) -> str:
        """One line: which index, which conditions."""
        name = "primary key" if self.index is None else f"index {self.index.name}"
        if not self.score:
            return f"full scan of {table.name}"
        conditions = ", ".join(dict.fromkeys(d.sql(dialect="sqlite") for d in self.described))
        return f"{name} of {table.name} on {conditions}"


def _matches(node: exp.Expression, alias: str, table: Table, scope: Scope) -> int | None:
    """The position in `table` of column `node` if it is one of `alias`'s columns."""
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Column) or node.name.startswith("$"):
        return None
    if node.table and node.table.lower() != alias:
        return None
    try:
        position = table.position(node.name)
    except ProgrammingError:
        return None
    if not node.table and any(s.name == node.name.lower() for s in scope.slots):
        return None  # also a column of the tables before: ambiguous here
    return position


def _const(compiler: Compiler, node: exp.Expression) -> Fn | None:
    """`node` compiled over the rows before this table, or None if it reads this table."""
    try:
        return compiler.compile(node)
    except ProgrammingError:
        return None


_FLIP: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
    exp.EQ: exp.EQ,
}


def _conditions(
    conjuncts: list[exp.Expression], alias: str, table: Table, compiler: Compiler
) -> dict[int, list[tuple[str, Any, exp.Expression]]]:
    """Per column of `table`: (op, value fn or list, sql) of the usable conditions."""
    found: dict[int, list[tuple[str, Any, exp.Expression]]] = {}
    outer = compiler.scope

    def add(position: int, op: str, value: Any, sql: exp.Expression) -> None:
        found.setdefault(position, []).append((op, value, sql))

    for node in conjuncts:
        sql = node
        if type(node) in _FLIP:
            for col, other, op in (
                (node.this, node.expression, type(node)),
                (node.expression, node.this, _FLIP[type(node)]),
            ):
                position = _matches(col, alias, table, outer)
                value = _const(compiler, other) if position is not None else None
                if position is not None and value is not None:
                    add(position, op.__name__, value, sql)
                    break
        elif isinstance(node, exp.Between):
            position = _matches(node.this, alias, table, outer)
            low, high = (_const(compiler, node.args[k]) for k in ("low", "high"))
            if position is not None and low is not None and high is not None:
                add(position, "GTE", low, sql)
                add(position, "LTE", high, sql)
        elif isinstance(node, exp.In) and not node.args.get("query"):
            position = _matches(node.this, alias, table, outer)
            items = [_const(compiler, e) for e in node.expressions]
            if position is not None and items and all(i is not None for i in items):
                add(position, "IN", items, sql)
        elif isinstance(node, exp.Like) and not node.args.get("negate"):
            position = _matches(node.this, alias, table, outer)
            pattern = node.expression
            if position is not None and isinstance(pattern, exp.Literal) and pattern.is_string:
                prefixes = sv.like_prefixes(pattern.this)
                if prefixes is not None and table.columns[position].affinity == sv.TEXT:
                    add(position, "LIKE", prefixes, sql)
    return found


def choose_path(
    conjuncts: list[exp.Expression], alias: str, table: Table, compiler: Compiler
) -> Path:
    """The narrowest path for `conjuncts` (the primary key wins ties)."""
    conditions = _conditions(conjuncts, alias, table, compiler)
    candidates: list[tuple[Index | None, tuple[int, ...]]] = []
    if table.primary:
        candidates.append((None, table.primary))
    candidates += [(i, i.columns) for i in table.indexes]
    best = Path(index=None)
    for index, columns in candidates:
        path = _path_over(index, columns, conditions)
        if path.score > best.score:
            best = path
    return best


def _path_over(
    index: Index | None,
    columns: tuple[int, ...],
    conditions: dict[int, list[tuple[str, Any, exp.Expression]]],
) -> Path:
    path = Path(index=index)
    for position in columns:
        usable = conditions.get(position, [])
        equal = next((c for c in usable if c[0] == "EQ"), None)
        if equal is not None:
            path.eq.append(equal[1])
            path.described.append(equal[2])
            continue
        for op, value, sql in usable:
            if op in ("GT", "GTE") and path.low is None:
                path.low = (value, op == "GTE")
            elif op in ("LT", "LTE") and path.high is None:
                path.high = (value, op == "LTE")
            elif op == "IN" and path.among is None and path.low is None and path.high is None:
                path.among = value
            elif op == "LIKE" and path.like is None:
                path.like = value
            else:
                continue
            path.described.append(sql)
        break
    if path.among is not None and (path.low or path.high or path.like):
        path.among = None
    return path


def _keyable(value: Any, affinity: str) -> bytes | None:
    """The encoding of `value` for a bound on a column of `affinity`; None if it may not order."""
    value = sv.apply_affinity(value, affinity)
    numeric = affinity in (sv.INTEGER, sv.REAL, sv.NUMERIC, sv.DECIMAL)
    if (numeric and sv.kind(value) != 1) or (affinity == sv.TEXT and not isinstance(value, str)):
        return None
    if affinity not in (sv.INTEGER, sv.REAL, sv.NUMERIC, sv.DECIMAL, sv.TEXT):
        return None
    return encode_value(value)


def _loose(encoded: bytes) -> bytes:
    """A number's encoding without its trailing type byte: 5 and 5.0 both extend it."""
    return encoded[:-1] if encoded[0] not in (TEXT_TAG, NULL_TAG) else encoded


@dataclass
class Ranges:
    """The key ranges a path reads for one row of the tables before it (empty: nothing)."""

    prefix: bytes
    spans: list[tuple[bytes, bytes]]


def key_ranges(path: Path, table: Table, row: Row, ctx: Ctx) -> list[tuple[bytes, bytes]]:
    """The [start, end) key ranges of `path` evaluated for `row`."""
    index_id = PRIMARY if path.index is None else path.index.id
    columns = table.primary if path.index is None else path.index.columns
    prefix = table_prefix(table.id, index_id)
    whole = [(prefix, prefix + END)]
    for fn, position in zip(path.eq, columns, strict=False):
        value = fn(row, ctx)
        if value is None:
            return []
        encoded = _keyable(value, table.columns[position].affinity)
        if encoded is None:
            return whole
        prefix += encoded
    if len(path.eq) >= len(columns):
        return [(prefix, prefix + END)]
    affinity = table.columns[columns[len(path.eq)]].affinity
    if path.among is not None:
        # On the primary key's last column each value names one whole key: its encoding as
        # the equalities' (a key, so one get), not loosened to both number types.
        exact = path.index is None and len(path.eq) + 1 == len(columns)
        return _among(path.among, affinity, prefix, row, ctx, whole, exact=exact)
    if path.like is not None:
        starts = [prefix + bytes((TEXT_TAG,)) + p.encode() for p in path.like]
        return [(start, start + END) for start in starts]
    start, end = prefix + bytes((NULL_TAG,)) + END, prefix + END
    if path.low is None and path.high is None:
        start = prefix
    for bound, is_low in ((path.low, True), (path.high, False)):
        if bound is None:
            continue
        value = bound[0](row, ctx)
        if value is None:
            return []
        encoded = _keyable(value, affinity)
        if encoded is None:
            return [(prefix, prefix + END)]
        loose = prefix + _loose(encoded)
        if is_low:
            start = max(start, loose if bound[1] else loose + END)
        else:
            end = min(end, loose + END if bound[1] else loose)
    return [(start, end)] if start < end else []


def _among(
    items: list[Fn],
    affinity: str,
    prefix: bytes,
    row: Row,
    ctx: Ctx,
    whole: list[tuple[bytes, bytes]],
    *,
    exact: bool = False,
) -> list[tuple[bytes, bytes]]:
    spans = set()
    for fn in items:
        value = fn(row, ctx)
        if value is None:
            continue
        encoded = _keyable(value, affinity)
        if encoded is None:
            return whole
        loose = prefix + (encoded if exact else _loose(encoded))
        spans.add((loose, loose + END))
    return sorted(spans)


def read(path: Path, table: Table, kv: OrderedKv, row: Row, ctx: Ctx) -> Iterator[Row]:
    """The rows of `table` in the key ranges of `path` (rows in index order for an index)."""
    for _, found in read_keyed(path, table, kv, row, ctx):
        yield found


def read_keyed(
    path: Path, table: Table, kv: OrderedKv, row: Row, ctx: Ctx
) -> Iterator[tuple[bytes, Row]]:
    """(row key, row) of each row of `table` in the key ranges of `path`.

    Equality on the whole primary key is one get, and an IN list on its last column one
    get of every key at once, not scans (on the KVS a scan lists the bucket's names).
    """
    keyed = len(path.eq) + (1 if path.among is not None else 0)
    whole_key = path.index is None and table.primary and keyed == len(table.primary)
    ranges = key_ranges(path, table, row, ctx)
    bare = table.rows_prefix()  # a range from it is the whole table (a value no key holds)
    if whole_key and all(end == start + END and start != bare for start, end in ranges):
        starts = [start for start, _ in ranges]
        for start, stored in zip(starts, get_many(kv, starts), strict=True):
            if stored is not None:
                yield start, table.decode_row(start, stored)
        return
    for start, end in ranges:
        if path.index is None:
            for key, value in kv.scan(start, end):
                yield key, table.decode_row(key, value)
            continue
        for key, _ in kv.scan(start, end):
            row_key = table.key_suffix_of_index_entry(path.index, key)
            stored = kv.get(row_key)
            if stored is not None:
                yield row_key, table.decode_row(row_key, stored)
