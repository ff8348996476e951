"""The names of a query's output columns, by each dialect's rule.

SQLite's SQL (the PEP 249 driver, the HTTP API) names an expression by its text, as sqlite3
does (`COUNT(*)`); PostgreSQL's (its protocol) as PostgreSQL's FigureColname does: a column
by its name, a function call by the function's name as written (`count`, `lower`), a cast by
what it casts, else by its type's name (`1::integer` is `int4`), CASE by its ELSE, a scalar
subquery by its column, anything else `?column?`; `AS x` wins in both, and PostgreSQL folds an
unquoted name to lower case.
"""

from __future__ import annotations

from sqlglot import exp

UNNAMED = "?column?"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_WRITTEN = "meterseal_written"  # key of a function's name as written in its node's meta
_DECLARED = "meterseal_declared"  # key of a column's declared name on a `*` column's node
# PostgreSQL's names of types (pg_type.typname) sqlglot spells otherwise
_TYPES = {
    exp.DataType.Type.INT: "int4",
    exp.DataType.Type.BIGINT: "int8",
    exp.DataType.Type.SMALLINT: "int2",
    exp.DataType.Type.CHAR: "bpchar",
    exp.DataType.Type.BOOLEAN: "bool",
    exp.DataType.Type.DOUBLE: "float8",
    exp.DataType.Type.FLOAT: "float4",
    exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.VARBINARY: "bytea",
}
# Calls sqlglot reads by their own syntax, keeping no position of the name: PostgreSQL's names
_CALLS: dict[type[exp.Expression], str] = {
    exp.GroupConcat: "string_agg",
    exp.Trim: "btrim",
    exp.StrPosition: "position",
    exp.Extract: "extract",
}


def remember_names(statement: exp.Expression, sql: str) -> None:
    """Keep on each function call of `statement` (parsed from `sql`) its name as written:
    sqlglot reads `substr`, `char_length` or `now` as the functions it knows by other names."""
    for node in statement.walk():
        start, end = node.meta.get("start"), node.meta.get("end")
        if (
            isinstance(start, int)
            and isinstance(end, int)
            and isinstance(node, exp.Func | exp.Binary)  # `mod(k, 2)` is a Binary as `k % 2` is
            and sql[end + 1 :].lstrip().startswith("(")
        ):
            node.meta[_WRITTEN] = sql[start : end + 1]


def declared(column: exp.Column, name: str | None) -> exp.Column:
    """`column` (one `*` stands for) labelled by PostgreSQL's rule as its table declares it
    (`"Mixed"`, not `mixed`), `name`, if known."""
    if name is not None:
        column.meta[_DECLARED] = name
    return column


def fold_column_names(statement: exp.Expression) -> None:
    """In PostgreSQL's CREATE TABLE, an unquoted column name is declared in lower case, as
    PostgreSQL folds it (`Plain` is `plain`: `*` and `RETURNING *` are labelled so)."""
    if isinstance(statement, exp.Create):
        for column in statement.find_all(exp.ColumnDef):
            if isinstance(column.this, exp.Identifier) and not column.this.args.get("quoted"):
                column.this.set("this", fold(column.this.name))


def sqlite_name(node: exp.Expression) -> str:
    """An output column's name by SQLite's rule (CascaDB's spelling of the expression)."""
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return node.name
    return node.sql(dialect="sqlite")


def postgres_name(node: exp.Expression) -> str:
    """An output column's name by PostgreSQL's rule (`?column?` when it finds none)."""
    if isinstance(node, exp.Alias):
        return _folded(node.args["alias"])
    return _figure(node)[0] or UNNAMED


def _folded(identifier: exp.Expression) -> str:
    name = identifier.name
    return name if identifier.args.get("quoted") else fold(name)


def fold(name: str) -> str:
    """An unquoted identifier as PostgreSQL reads it in UTF-8: A to Z in lower case, no other
    letter (`ÄB` is `Äb`; str.lower gave `äb`)."""
    return name.translate(_ASCII_LOWER)


def _figure(node: exp.Expression) -> tuple[str, int]:
    """PostgreSQL's FigureColnameInternal: a name and how strongly it holds (2: a column's or
    function's; 1: a type's or CASE's; 0: none)."""
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        name = node.meta.get(_DECLARED)
        return (name if isinstance(name, str) else _folded(node.this)), 2
    if isinstance(node, exp.Paren | exp.Collate | exp.Window):  # no node of PostgreSQL's own
        return _figure(node.this)
    if isinstance(node, exp.Cast):
        name, strength = _figure(node.this)
        return (name, strength) if strength > 1 else (_type_name(node.to), 1)
    if isinstance(node, exp.Case):
        default = node.args.get("default")
        name, strength = _figure(default) if default is not None else ("", 0)
        return (name, strength) if strength > 1 else ("case", 1)
    if isinstance(node, exp.Exists):
        return "exists", 2
    if isinstance(node, exp.Array):
        return "array", 2
    if isinstance(node, exp.Subquery):  # a scalar subquery: its one column's name
        inner = node.unnest()
        while isinstance(inner, exp.SetOperation):
            inner = inner.this
        if isinstance(inner, exp.Select) and inner.expressions:
            return postgres_name(inner.expressions[0]), 2
        return "", 0
    written = node.meta.get(_WRITTEN)
    if isinstance(written, str):  # a function call: the function's name
        quoted = written.startswith('"') and written.endswith('"') and len(written) > 1
        return (written[1:-1] if quoted else fold(written)), 2
    if isinstance(node, exp.Anonymous):
        return fold(node.name), 2
    if isinstance(node, exp.Func) and not isinstance(node, exp.Binary):
        return _CALLS.get(type(node), node.sql_name().lower()), 2
    return "", 0


def _type_name(to: exp.DataType) -> str:
    known = _TYPES.get(to.this) if isinstance(to.this, exp.DataType.Type) else None
    if known is not None:
        return known
    name = to.sql(dialect="postgres").split("(")[0].strip().lower()
    return name.rsplit(".", 1)[-1]  # pg_catalog.int4 is int4, as in PostgreSQL
