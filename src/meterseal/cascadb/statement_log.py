"""What CascaDB logs of a statement: its shape, every value replaced by `?`, comments dropped.

The paper runs CascaDB inside the enclave because the statements themselves are sensitive: a
meter id in a WHERE clause or a reading in an INSERT is customer data. So a log line carries
the statement with its literals (numbers, strings, booleans, hex and byte strings) replaced
by `?` and its comments removed; parameters (`$1`, `?`) stay as they are, since their values
never were in the text. Names (tables, columns) and the SQL's structure remain: what an
operator needs to see which statements run and how often. Type arguments such as the
`(10, 3)` of DECIMAL(10, 3) are part of the schema, not data, and stay.
"""

from __future__ import annotations

from sqlglot import exp

# Every sqlglot node that carries a value written in the statement (NULL carries none).
_VALUES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Literal",
        "Boolean",
        "HexString",
        "ByteString",
        "BitString",
        "National",
        "RawString",
        "UnicodeString",
    )
    if hasattr(exp, name)
)
MAX_SHAPE = 2000  # characters of a logged shape (a 10,000-row INSERT is one line, cut)


def _hidden(node: exp.Expression) -> exp.Expression:
    if isinstance(node, _VALUES) and node.find_ancestor(exp.DataType, exp.Parameter) is None:
        return exp.Var(this="?")
    return node


def statement_shape(statement: exp.Expression, dialect: str) -> str:
    """`statement` as SQL in `dialect` with every literal value `?` and no comments."""
    try:
        shape = statement.transform(_hidden)  # a copy: the engine's cached tree is untouched
        for node in shape.walk():
            node.comments = None
        text = shape.sql(dialect=dialect)
    except Exception:  # a statement sqlglot cannot print back: its kind is all we say
        return f"({statement.key})"
    return text if len(text) <= MAX_SHAPE else text[:MAX_SHAPE] + "…"
