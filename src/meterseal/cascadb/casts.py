"""Casts and typed literals (`CAST(x AS t)`, `x::t`, `DATE '…'`): the types CascaDB implements,
each dialect's conversion to them, and a refusal (0A000, when the statement is planned) of
any other type, whose value would otherwise be SQLite's NUMERIC reading of it (`DATE
'2020-01-01'` was 2020, `'{}'::json` 0).

SQLite's dialect (the PEP 249 driver, the HTTP API) converts as SQLite does, integers held to
64 bits as SQLite holds them (values.sqlite_integer); PostgreSQL's (its protocol) converts to
integers, double precision and numeric as PostgreSQL does: text must be a number of the type
(22P02; float8's and numeric's spellings of NaN and infinities included), integers are
rounded, and a value outside the type's range fails with 22003.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlglot import exp

from meterseal.cascadb import values as sv
from meterseal.cascadb.errors import (
    CannotCoerce,
    InvalidTextRepresentation,
    NotSupportedError,
    NumericOverflow,
)
from meterseal.cascadb.scope import Fn

POSTGRES = "meterseal_postgres"  # key of a cast's node meta: read in PostgreSQL's dialect
_T = exp.DataType.Type
# PostgreSQL's integer types: their names in messages and their widths
_INTEGERS = {_T.SMALLINT: ("smallint", 16), _T.INT: ("integer", 32), _T.BIGINT: ("bigint", 64)}
_TEXTS = {_T.TEXT, _T.VARCHAR, _T.NVARCHAR}
_SPACE = " \t\n\r\f\v"  # C's isspace(), which PostgreSQL's input functions skip
# float8in's numbers are glibc strtod's: decimal, hexadecimal, infinities and NaN (`nan(…)`)
_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)
_SPECIAL_FLOAT = re.compile(r"[+-]?(?:infinity|inf|nan(?:\([0-9A-Za-z_]*\))?)", re.IGNORECASE)
_INTEGER = re.compile(r"[ \t\n\r\f\v]*([+-]?)([0-9]*)")  # pg_strtoint's sign and digits
# numeric_in's: no hexadecimal, no `+nan`; an exponent is strtol's (spaces before it skipped)
_NUMERIC = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:[eE][ \t\n\r\f\v]*([+-]?[0-9]+))?")
# Types whose values CascaDB holds as PostgreSQL's (text output and all): int8, float8,
# numeric, text, bytea; and its own timestamps. CHAR(n) pads and cuts to n (bpchar) and
# real (float4) rounds to 24 bits (16777217::real is 1.6777216e+07), which CascaDB's text
# and floats do not; date, time, interval, json, boolean, uuid... it has none of.
_POSTGRES = {*_INTEGERS, *_TEXTS, _T.DOUBLE, _T.DECIMAL, _T.VARBINARY}
_POSTGRES |= {_T.TIMESTAMP, _T.TIMESTAMPTZ}
# SQLite's names of its affinities, and names of no type sqlglot knows (SQLite's rule reads
# CAST(x AS SIGNED) as NUMERIC): a type sqlglot knows otherwise (DATE, BOOLEAN, JSON...) is
# refused rather than read as a number.
_SQLITE = _POSTGRES | {
    _T.FLOAT,
    _T.TINYINT,
    _T.MEDIUMINT,
    _T.CHAR,
    _T.NCHAR,
    _T.DATETIME,
    _T.USERDEFINED,
}


def mark_postgres(statement: exp.Expression) -> None:
    """Mark the casts of `statement` as read in PostgreSQL's dialect (their conversions)."""
    for node in statement.find_all(exp.Cast):
        node.meta[POSTGRES] = True


def compile_cast(node: exp.Cast, inner: Fn) -> Fn:
    """A closure computing `node` from its operand's; NotSupportedError for a type CascaDB
    does not implement, naming it."""
    postgres = bool(node.meta.get(POSTGRES))
    to = _in_pg_catalog(node.to) if postgres else node.to
    float4 = postgres and to.this == _T.DOUBLE and (_length(to) or 53) <= 24  # float(p)
    if to.this not in (_POSTGRES if postgres else _SQLITE) or float4:
        name = node.to.sql(dialect="postgres") if postgres else node.to.sql()
        raise NotSupportedError(
            f"CascaDB does not implement the type {name.lower()}: a cast to it is refused"
        )
    if postgres and to.this in _INTEGERS:
        name, bits = _INTEGERS[to.this]
        # A number written in the statement is PostgreSQL's numeric (2.5::int is 3), which
        # CascaDB reads as a float: rounded as numeric is, half away from zero.
        literal = node.this.is_number
        convert = postgres_integer(name, bits, literal)
        return lambda row, ctx: convert(inner(row, ctx))
    if postgres and to.this in (_T.DOUBLE, _T.DECIMAL):
        return _postgres_number(node, to, inner)
    if postgres and to.this in _TEXTS:
        return _postgres_text(to, inner)
    target = to.sql()  # DECIMAL(p, s) as written: SQLite's spelling is REAL(p, s)
    if sv.affinity_of(target) != sv.DECIMAL:
        target = to.sql(dialect="sqlite")
    return lambda row, ctx: sv.cast(inner(row, ctx), target)


def _postgres_text(to: exp.DataType, inner: Fn) -> Fn:
    """PostgreSQL's cast to text or varchar[(n)]: a float as float8out writes it (`1`, not
    SQLite's `1.0`), then cut to n characters."""
    length = _length(to)
    target = to.sql(dialect="sqlite")

    def text(row: Any, ctx: Any) -> Any:
        value = inner(row, ctx)
        if isinstance(value, float):
            value = float8_out(value)
        if value is None or length is None:
            return sv.cast(value, target)
        return sv.text_of(value)[:length]

    return text


def postgres_integer(name: str, bits: int, literal: bool = False) -> Callable[[Any], Any]:
    """PostgreSQL's cast to the integer type `name` of `bits`: text must be an integer (22P02),
    a float is rounded half to even (rint), a numeric (`literal`: a float written as a
    number) half away from zero, and a result outside the type's range is 22003."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def cast(value: Any) -> int | None:
        number: int
        if value is None:
            return None
        if isinstance(value, str):
            return _integer_in(value, name, low, high)
        if isinstance(value, float) and literal and value == value and abs(value) != float("inf"):
            value = Decimal(repr(value))
        if isinstance(value, float):
            if value != value or abs(value) == float("inf"):
                raise NumericOverflow(f"{name} out of range")
            number = round(value)  # half to even, as rint()
        elif isinstance(value, Decimal):
            if value.is_nan():
                raise NotSupportedError(f"cannot convert NaN to {name}")
            if value.is_infinite():
                raise NumericOverflow(f"{name} out of range")
            number = int(value.to_integral_value(rounding=ROUND_HALF_UP))
        elif isinstance(value, int):
            number = value
        else:
            raise CannotCoerce(f"cannot cast a {sv.type_name(value)} value to {name}")
        if not low <= number <= high:
            raise NumericOverflow(f"{name} out of range")
        return number

    return cast


def _integer_in(value: str, name: str, low: int, high: int) -> int:
    """PostgreSQL's int2in, int4in, int8in: spaces around a sign and ASCII digits; digits past
    the type's range are 22003 before what follows them is looked at (pg_strtoint)."""
    found = _INTEGER.match(value)
    assert found is not None  # (every part optional)
    sign, digits = found.groups()
    # (past 19 digits no integer fits: Python reads at most 4,300 of them)
    if digits and (len(digits.lstrip("0")) > 19 or not low <= int(sign + digits) <= high):
        raise NumericOverflow(f'value "{value}" is out of range for type {name}')
    if not digits or value[found.end() :].strip(_SPACE):
        raise InvalidTextRepresentation(f'invalid input syntax for type {name}: "{value}"')
    return int(sign + digits)


def _postgres_number(node: exp.Cast, to: exp.DataType, inner: Fn) -> Fn:
    """PostgreSQL's cast to double precision or numeric[(p, s)]; a number written in the
    statement (numeric to PostgreSQL, a float to CascaDB) is converted from its text."""
    written = _written_number(node.this)
    if to.this == _T.DOUBLE:
        if written is not None:
            value = postgres_float8(written)
            return lambda row, ctx: value
        return lambda row, ctx: postgres_float8(inner(row, ctx))
    typmod = sv.decimal_typmod(to.sql())  # 22023 when planned, as PostgreSQL's
    if written is not None:
        number = postgres_numeric(written, typmod)
        return lambda row, ctx: number
    return lambda row, ctx: postgres_numeric(inner(row, ctx), typmod)


def _written_number(node: exp.Expression) -> str | None:
    """The text of a number written in the statement (`2.5`, `(-1e400)`), else None."""
    if isinstance(node, exp.Paren):
        return _written_number(node.this)
    if isinstance(node, exp.Neg):
        text = _written_number(node.this)
        return None if text is None else text[1:] if text[:1] == "-" else "-" + text
    if isinstance(node, exp.Literal) and node.is_number:
        return str(node.this)
    return None


def postgres_float8(value: Any) -> float | None:
    """`value`::double precision as PostgreSQL's: text as float8in reads it (22P02 when not a
    number, 22003 past the type's range, which a numeric past it fails with too)."""
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, str):
        return _float8_in(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)
        number = float(value)
        if abs(number) == float("inf") or (number == 0 and not value.is_zero()):
            text = format(value, "f")
            raise NumericOverflow(f'"{text}" is out of range for type double precision')
        return number
    if isinstance(value, int):
        return float(value)
    raise CannotCoerce(f"cannot cast type {_pg_type(value)} to double precision")


def _float8_in(value: str) -> float:
    """PostgreSQL's float8in: spaces around a number strtod reads wholly; strtod's reading of
    its longest prefix out of range is 22003 before what follows it is looked at."""
    text = value.lstrip(_SPACE)
    found = _SPECIAL_FLOAT.match(text) or _HEX_FLOAT.match(text) or _DECIMAL_FLOAT.match(text)
    if found is not None:
        number = _strtod(found[0])  # its ERANGE first
        if not text[found.end() :].strip(_SPACE):
            return number
    raise InvalidTextRepresentation(f'invalid input syntax for type double precision: "{value}"')


def _strtod(text: str) -> float:
    """A number as strtod reads it; 22003 past a double's range or when not 0 it rounds to 0."""
    if _SPECIAL_FLOAT.fullmatch(text):
        return float(text.split("(")[0])  # nan(…)'s payload: NaN all the same
    hexadecimal = _HEX_FLOAT.fullmatch(text) is not None
    mantissa = re.split("[pP]" if hexadecimal else "[eE]", text)[0]
    try:
        number = float.fromhex(text) if hexadecimal else float(text)
    except OverflowError:
        number = float("inf")
    # strtod's ERANGE: past the largest double, or a number not 0 that rounds to 0
    nonzero = re.search("[1-9a-fA-F]" if hexadecimal else "[1-9]", mantissa.lstrip("+-0xX"))
    if abs(number) == float("inf") or (number == 0 and nonzero):
        raise NumericOverflow(f'"{text}" is out of range for type double precision')
    return number


def float8_out(value: float) -> str:
    """PostgreSQL's float8out (extra_float_digits 1, its default since PostgreSQL 12): the
    shortest digits that read back as the value, in exponent form when the decimal exponent
    is below -4 or 15 and above, as Ryu's to_chars in PostgreSQL's src/common/d2s.c."""
    if value != value:
        return "NaN"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value in (0.0, float("inf"), float("-inf")):
        return sign + ("0" if value == 0 else "Infinity")
    digits, exponent = _shortest(abs(value))
    shown = exponent + len(digits) - 1  # the exponent of d.ddd
    if -4 <= shown < 15:
        return sign + format(Decimal(f"{digits}e{exponent}"), "f")
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if shown < 0 else '+'}{abs(shown):02d}"


def _shortest(value: float) -> tuple[str, int]:
    """The digits (no trailing zeros) and exponent of a positive finite double's shortest
    decimal, as PostgreSQL's Ryu picks it: closest to the value, never a midpoint between it
    and a neighbour."""
    if value >= 2.0**53:
        return _shortest_integer(value)
    # repr's digits are also the shortest that round-trip, the closest of them (Gay's dtoa);
    # it takes a midpoint when the mantissa is even, which PostgreSQL's Ryu never does
    # (STRICTLY_SHORTEST 0), but below 2**53 no midpoint has 17 digits or fewer
    _, places, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, places))
    assert isinstance(exponent, int)  # a finite number's
    stripped = digits.rstrip("0")
    return stripped, exponent + len(digits) - len(stripped)


def _shortest_integer(value: float) -> tuple[str, int]:
    """_shortest of a double of 2**53 and more (an integer, its midpoints too): the fewest
    digits n * 10**k strictly between the midpoints, then the n nearest the value (half to
    even), as d2d's loop with acceptBounds false."""
    significand, power = math.frexp(value)
    shift = power - 53  # value = mantissa * 2**shift, shift >= 1
    mantissa = int(significand * 2**53)
    # four times the value and its midpoints: integers, the lower one a quarter ulp away at a
    # power of two (its neighbour below is half as far)
    exact = mantissa << (shift + 2)
    high = exact + (2 << shift)
    low = exact - ((1 if mantissa == 2**52 else 2) << shift)
    k = max(0, len(str(exact >> 2)) - 18)  # 17 digits always do
    while (low // (step := 4 * 10 ** (k + 1)) + 1) * step < high:
        k += 1
    step = 4 * 10**k
    below, rest = divmod(exact, step)
    nearest = below + (rest * 2 > step or (rest * 2 == step and below % 2 == 1))
    chosen = max(nearest, low // step + 1)
    digits = str(chosen)
    stripped = digits.rstrip("0")
    return stripped, k + len(digits) - len(stripped)


def postgres_numeric(value: Any, typmod: tuple[int, int] | None = None) -> Decimal | None:
    """`value`::numeric[(p, s)] as PostgreSQL's: text as numeric_in reads it (22P02 when not a
    number), a float to 15 significant digits (float8_numeric), then fitted to (p, s)."""
    number: Decimal
    if value is None:
        return None
    if isinstance(value, str):
        number = _numeric_in(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        finite = value == value and abs(value) != float("inf")
        number = Decimal(format(value, ".15g") if finite else value)
    elif isinstance(value, int):
        number = Decimal(value)
    else:
        raise CannotCoerce(f"cannot cast type {_pg_type(value)} to numeric")
    if number.is_zero() or number.is_nan():
        number = number.copy_abs()  # numeric has no -0, nor -NaN (a float's NaN may be)
    number = sv.in_numeric_range(number)
    if typmod is None or number.is_nan():
        return number
    if number.is_infinite():
        precision, scale = typmod
        raise NumericOverflow(
            f"numeric field overflow: a field with precision {precision}, scale {scale} "
            "cannot hold an infinite value"
        )
    fitted = sv.fit_decimal(number, typmod)
    assert isinstance(fitted, Decimal)  # a finite Decimal's
    return fitted


def _numeric_in(value: str) -> Decimal:
    """PostgreSQL's numeric_in: spaces around NaN, an infinity or a decimal number."""
    text = value.strip(_SPACE)
    lowered = text.lower()
    if lowered == "nan":  # unsigned: `-nan` is not numeric's
        return Decimal("NaN")
    signed = lowered[:1] in ("+", "-")
    if (lowered[1:] if signed else lowered) in ("infinity", "inf"):
        return Decimal("-Infinity" if lowered[:1] == "-" else "Infinity")
    match = _NUMERIC.match(text)
    exponent = match[2] if match else None
    # set_var_from_str refuses an exponent of 2**30 - 1 and more before what follows it
    magnitude = (exponent or "").lstrip("+-").lstrip("0")
    if len(magnitude) > 10 or int(magnitude or 0) >= 2**30 - 1:
        raise NumericOverflow("value overflows numeric format")
    if match is None or match.end() != len(text):
        raise InvalidTextRepresentation(f'invalid input syntax for type numeric: "{value}"')
    try:
        return Decimal(f"{match[1]}e{exponent}" if exponent else match[1])
    except InvalidOperation:  # an exponent past what Decimal holds: past numeric's too
        raise NumericOverflow("value overflows numeric format") from None


def _pg_type(value: Any) -> str:
    """PostgreSQL's name of a value's type, for a cast refused."""
    if isinstance(value, bytes):
        return "bytea"
    if isinstance(value, dt.datetime):
        return "timestamp with time zone"
    return sv.type_name(value)


def _in_pg_catalog(to: exp.DataType) -> exp.DataType:
    """`pg_catalog.int4` as the type `int4` names (sqlglot knows no schema of types)."""
    kind = str(to.args.get("kind") or "")
    schema, _, base = kind.replace('"', "").rpartition(".")
    if to.this != _T.USERDEFINED or schema.lower() != "pg_catalog":
        return to
    params = ", ".join(p.sql(dialect="postgres") for p in to.expressions)
    try:
        return exp.DataType.build(f"{base}({params})" if params else base, dialect="postgres")
    except Exception:  # sqlglot's ParseError and kin: a name of no type it knows
        return to


def _length(to: exp.DataType) -> int | None:
    """n of varchar(n) (p of float(p)), if given."""
    if not to.expressions:
        return None
    text = to.expressions[0].sql()
    return int(text) if text.isdigit() else None
