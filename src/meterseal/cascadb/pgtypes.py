"""Values on the PostgreSQL protocol: result column types, the text format, bound parameters.

Results travel as text (format 0). A column whose expression tells its type (a Boolean:
result_types.py) is described so, bool as `t`/`f`; another is typed from its values: int8,
float8, numeric, bytea, timestamptz, else text. Parameters come as text, or binary for the
integer, float and bytea types.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from meterseal.cascadb import errors
from meterseal.cascadb.casts import float8_out, postgres_float8, postgres_integer, postgres_numeric
from meterseal.cascadb.pg_strings import bad_sequence
from meterseal.cascadb.values import truth

TEXT, INT8, FLOAT8, NUMERIC, BYTEA, TIMESTAMPTZ, BOOL = 25, 20, 701, 1700, 17, 1184, 16
_INTEGERS = {20: ("bigint", 64), 23: ("integer", 32), 21: ("smallint", 16)}  # int8, int4, int2


def oid_of(values: list[Any]) -> int:
    """The type a result column is described as, told from its values."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {int}:
        return INT8
    if kinds and kinds <= {int, float}:
        return FLOAT8
    if kinds and kinds <= {int, Decimal}:
        return NUMERIC
    if kinds == {bytes}:
        return BYTEA
    if kinds == {dt.datetime}:
        return TIMESTAMPTZ
    return TEXT


def column_types(hints: Sequence[int | None], rows: Sequence[Sequence[Any]]) -> list[int]:
    """The types result columns are described as: each one's hint (the type its expression
    tells), else the type told from its values."""
    return [oid_of([row[i] for row in rows]) if t is None else t for i, t in enumerate(hints)]


def text_of(value: Any, oid: int | None = None) -> bytes:
    """A value in PostgreSQL's text format (as of the type `oid`, when given: a bool column's
    1 and 0, CascaDB's truth values as SQLite's, are `t` and `f`)."""
    if oid == BOOL:
        return b"t" if truth(value) else b"f"
    if isinstance(value, bytes):
        return b"\\x" + value.hex().encode()
    if isinstance(value, float):
        return float8_out(value).encode()
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return stamp.isoformat(sep=" ").encode()
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f").encode()  # numeric's text never has an exponent
    return str(value).encode()


def parameter(raw: bytes | None, oid: int, binary: bool) -> Any:
    """A bound parameter's value from its bytes, type and format; DataError (22P02, as
    PostgreSQL's, an error of the statement) if the bytes are not a value of the type."""
    try:
        return _parameter(raw, oid, binary)
    except (ValueError, ArithmeticError, struct.error) as exc:  # Decimal's are arithmetic
        raise errors.InvalidTextRepresentation(
            f"invalid input syntax for the parameter of type {oid}: {exc}"
        ) from None


def utf8(raw: bytes) -> str:
    """Text from a client (server_encoding UTF8); 22021 as PostgreSQL's when it is not UTF-8."""
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        shown = bad_sequence(raw[exc.start :])  # PostgreSQL's, not Python's, length of it
        message = f'invalid byte sequence for encoding "UTF8": {shown}'
        raise errors.CharacterNotInRepertoire(message) from None


def _parameter(raw: bytes | None, oid: int, binary: bool) -> Any:
    if raw is None:
        return None
    if binary:
        if oid in (20, 21, 23):
            return int.from_bytes(raw, "big", signed=True)
        if oid == FLOAT8:
            return struct.unpack("!d", raw)[0]
        if oid == 700:
            return struct.unpack("!f", raw)[0]
        if oid == BYTEA:
            return raw
        raise errors.NotSupportedError(f"binary parameters of type {oid} are not supported")
    text = utf8(raw)
    # read as PostgreSQL's input functions read them, not as Python's int(), float() and
    # Decimal(), which take 1_000, sNaN and digits of other scripts
    if oid in _INTEGERS:
        return postgres_integer(*_INTEGERS[oid])(text)
    if oid in (700, FLOAT8):
        return postgres_float8(text)
    if oid == NUMERIC:
        return postgres_numeric(text)
    if oid == BOOL:
        return int(text in ("t", "true", "1"))
    if oid == BYTEA:
        return bytes.fromhex(text[2:]) if text.startswith("\\x") else raw
    if oid in (1114, TIMESTAMPTZ):
        return dt.datetime.fromisoformat(text)
    return text
