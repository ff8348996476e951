"""SQL values as SQLite treats them: type order, affinity, arithmetic, truth, text and sort keys."""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from meterseal.cascadb.errors import DataError, InvalidParameterValue, NumericOverflow
from meterseal.cascadb.keys import Value

Number = int | float | Decimal
_INT64 = (-(2**63), 2**63 - 1)
# SQLite's numeric prefix of text: ASCII spaces and digits only ('\uff11\uff12' is no number)
_NUMERIC_PREFIX = re.compile(r"\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)", re.ASCII)

# Column affinities (SQLite's rules on the declared type name), plus TIMESTAMP of our own.
INTEGER, REAL, NUMERIC, TEXT, BLOB, TIMESTAMP = "INTEGER", "REAL", "NUMERIC", "TEXT", "BLOB", "TS"
DECIMAL = "DECIMAL"  # NUMERIC that keeps fractions exact (Decimal), as PostgreSQL's numeric


def affinity_of(declared: str) -> str:
    """SQLite's affinity of a declared column type (section 3.1 of its datatype page)."""
    upper = declared.upper()
    if "INT" in upper or "SERIAL" in upper:
        return INTEGER
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return TEXT
    if "BLOB" in upper or upper in ("", "VARBINARY", "BINARY"):
        return BLOB
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return REAL
    if "TIMESTAMP" in upper or upper == "DATETIME":
        return TIMESTAMP
    if upper.startswith(("DECIMAL", "NUMERIC")):
        return DECIMAL
    return NUMERIC


def kind(value: Any) -> int:
    """SQLite's order of kinds: NULL 0 < numbers 1 < text 2 < blobs 3 (< timestamps 4)."""
    if value is None:
        return 0
    if isinstance(value, int | float | Decimal):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, bytes):
        return 3
    return 4


class _NaN:
    """NaN's place among numbers, as PostgreSQL's: equal to itself, after every other number."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NaN)

    def __hash__(self) -> int:
        return 0x7FF8

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return isinstance(other, _NaN)

    def __gt__(self, other: object) -> bool:
        return not isinstance(other, _NaN)

    def __ge__(self, other: object) -> bool:
        return True


NAN = _NaN()  # a NaN's sort and hash key (a float NaN equals nothing, a Decimal's raises)
_INF = float("inf")


def sort_key(value: Any) -> tuple[int, Any]:
    """A key sorting values as SQLite's ORDER BY does (NULLs first; NaN after numbers)."""
    if value is None:
        return (0, 0)
    return (kind(value), value if value == value else NAN)


def compare(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 as SQLite compares a and b; None when either is NULL."""
    if a is None or b is None:
        return None
    ka, kb = kind(a), kind(b)
    if ka != kb:
        return -1 if ka < kb else 1
    if ka == 1 and (a != a or b != b):  # NaN: equal to NaN, above every other number
        return int(a != a) - int(b != b)
    if (isinstance(a, Decimal) and isinstance(b, float)) or (
        isinstance(b, Decimal) and isinstance(a, float)
    ):
        a, b = float(a), float(b)
    return int(a > b) - int(a < b)


def hash_key(value: Any) -> Any:
    """A dict key equal for values SQLite calls equal (1 and 1.0; NaN and NaN)."""
    if isinstance(value, float | Decimal):
        if value != value:
            return NAN
        if abs(value) != _INF and value == int(value):
            return int(value)
    return value


def parse_number(text: str) -> Number | None:
    """The number `text` is wholly (SQLite's 'looks like a number'), else None."""
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        number = float(stripped)
    except ValueError:
        return None
    return number if number == number else None


def to_number(value: Any) -> Number | None:
    """The numeric value SQLite's arithmetic uses (text: its numeric prefix, else 0)."""
    if value is None or isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    match = _NUMERIC_PREFIX.match(str(value))
    if match is None:
        return 0
    parsed = parse_number(match.group(0))
    return 0 if parsed is None else parsed


def numeric_prefix(value: str | bytes) -> str:
    """The number text starts with as SQLite's cast to NUMERIC reads it ('1.5e3x' is '1.5e3',
    ' 7 ' is '7'), '0' when it starts with none ('abc', '', '0x10', 'inf')."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    match = _NUMERIC_PREFIX.match(value)
    return "0" if match is None else match.group(0).strip()


def apply_affinity(value: Any, affinity: str) -> Value:
    """`value` as a column of `affinity` stores it (SQLite's conversions on insert)."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = int(value)
    if affinity == DECIMAL:
        return _decimal(value)
    if affinity in (INTEGER, NUMERIC, REAL):
        if isinstance(value, str):
            parsed = parse_number(value)
            if parsed is None:
                return value
            value = parsed
        integral = isinstance(value, float) and value.is_integer()
        if integral and affinity != REAL and _INT64[0] <= value <= _INT64[1]:
            return int(value)
        if isinstance(value, int) and affinity == REAL:
            return float(value)
        return value  # type: ignore[no-any-return]
    if affinity == TEXT and isinstance(value, int | float | Decimal):
        return text_of(value)
    if affinity == TIMESTAMP and isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:  # else the session ended
            raise DataError(f'invalid input syntax for type timestamp: "{value}"') from None
    return value  # type: ignore[no-any-return]


def _decimal(value: Any) -> Value:
    """A DECIMAL column's value: every number and numeric text a Decimal (integers too, so a
    key holds one number type and `7 / 2` is 3.5, as in PostgreSQL's numeric)."""
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else value
    if isinstance(value, int):
        return in_numeric_range(Decimal(value))
    if isinstance(value, str):
        return value if parse_number(value) is None else in_numeric_range(Decimal(value.strip()))
    if isinstance(value, Decimal):
        return in_numeric_range(value)
    return value  # type: ignore[no-any-return]


MAX_DIGITS_BEFORE, MAX_DIGITS_AFTER = 131_072, 16_383  # PostgreSQL numeric's range


def in_numeric_range(value: Decimal) -> Decimal:
    """`value` if PostgreSQL's numeric holds it (131,072 digits before the point, 16,383
    after), else NumericOverflow: '1e999999999' is a short text whose digits are not."""
    if value.is_finite() and not value.is_zero():
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)  # a finite value's
        if value.adjusted() >= MAX_DIGITS_BEFORE or exponent < -MAX_DIGITS_AFTER:
            raise NumericOverflow("value overflows numeric format")
    return value


MAX_PRECISION = 1000  # NUMERIC's largest precision and scale, as PostgreSQL's
_TYPMOD = re.compile(r"\s*(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)\s*$", re.I)


@functools.cache
def decimal_typmod(declared: str) -> tuple[int, int] | None:
    """(precision, scale) of DECIMAL(p, s) or NUMERIC(p) (scale 0); None without them."""
    match = _TYPMOD.match(declared)
    if match is None:
        return None
    precision, scale = int(match.group(1)), int(match.group(2) or 0)
    # PostgreSQL's bounds: a value has at most about precision + |scale| digits, and one
    # short statement must not make one of millions.
    if not 1 <= precision <= MAX_PRECISION:
        raise InvalidParameterValue(
            f"NUMERIC precision {precision} must be between 1 and {MAX_PRECISION}"
        )
    if not -MAX_PRECISION <= scale <= MAX_PRECISION:
        raise InvalidParameterValue(
            f"NUMERIC scale {scale} must be between {-MAX_PRECISION} and {MAX_PRECISION}"
        )
    return precision, scale


def fit_decimal(value: Value, typmod: tuple[int, int]) -> Value:
    """`value` (a DECIMAL column's) rounded to the scale, half away from zero, as PostgreSQL
    stores it in numeric(p, s); NumericOverflow when more integer digits than p - s."""
    if value is None:
        return None
    precision, scale = typmod
    if not isinstance(value, Decimal) or not value.is_finite():
        raise DataError(f"invalid input syntax for type numeric({precision}, {scale}): {value!r}")
    limit = precision - scale  # integer digits allowed
    overflow = NumericOverflow(
        f"numeric field overflow: a field with precision {precision}, scale {scale} must "
        f"round to an absolute value less than 10^{limit}"
    )
    if not value.is_zero() and value.adjusted() >= limit:
        raise overflow
    # The result has at most precision + 1 digits (a carry): an exact context for that.
    fitted = value.quantize(
        Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=Context(prec=precision + 2)
    )
    if fitted.is_zero():
        return fitted.copy_abs()  # numeric has no -0: -0.001 in scale 2 is 0.00
    if fitted.adjusted() >= limit:
        raise overflow
    return fitted


def text_of(value: Any) -> str:
    """The text SQLite gives a value (CAST AS TEXT, ||)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"
        return repr(value).replace("e+", "e+")
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def truth(value: Any) -> bool | None:
    """SQLite's truth of a value: None for NULL, else non-zero."""
    if value is None:
        return None
    number = to_number(value)
    return bool(number)


def from_bool(flag: bool | None) -> int | None:
    """SQL's 1/0/NULL for a truth value."""
    return None if flag is None else int(flag)


def _int_result(number: int) -> Number:
    return number if _INT64[0] <= number <= _INT64[1] else float(number)


def _operands(a: Any, b: Any) -> tuple[Number, Number] | None:
    x, y = to_number(a), to_number(b)
    if x is None or y is None:
        return None
    if isinstance(x, Decimal) and isinstance(y, float):
        return float(x), y
    if isinstance(y, Decimal) and isinstance(x, float):
        return x, float(y)
    return x, y


def add(a: Any, b: Any) -> Number | None:
    """a + b."""
    pair = _operands(a, b)
    if pair is None:
        return None
    result = pair[0] + pair[1]  # type: ignore[operator]
    return _int_result(result) if isinstance(result, int) else result


def subtract(a: Any, b: Any) -> Number | None:
    """a - b."""
    pair = _operands(a, b)
    if pair is None:
        return None
    result = pair[0] - pair[1]  # type: ignore[operator]
    return _int_result(result) if isinstance(result, int) else result


def multiply(a: Any, b: Any) -> Number | None:
    """a * b."""
    pair = _operands(a, b)
    if pair is None:
        return None
    result = pair[0] * pair[1]  # type: ignore[operator]
    return _int_result(result) if isinstance(result, int) else result


def divide(a: Any, b: Any) -> Number | None:
    """a / b: integers truncate toward zero; dividing by zero is NULL."""
    pair = _operands(a, b)
    if pair is None or pair[1] == 0:
        return None
    x, y = pair
    if isinstance(x, int) and isinstance(y, int):
        quotient = abs(x) // abs(y)
        return _int_result(quotient if (x < 0) == (y < 0) else -quotient)
    return x / y  # type: ignore[operator]


def divides_by_zero(a: Any, b: Any, modulo: bool = False) -> bool:
    """Whether a / b (or a % b, on integers) divides by zero: neither NULL, the divisor 0."""
    pair = _operands(a, b)
    if pair is None:
        return False
    return (int(pair[1]) if modulo else pair[1]) == 0


def modulo(a: Any, b: Any) -> Number | None:
    """a % b on the operands as integers, the sign of a; modulo zero is NULL."""
    pair = _operands(a, b)
    if pair is None:
        return None
    x, y = int(pair[0]), int(pair[1])
    if y == 0:
        return None
    remainder = abs(x) % abs(y)
    return remainder if x >= 0 else -remainder


def negate(a: Any) -> Number | None:
    """-a."""
    x = to_number(a)
    return None if x is None else -x


def like(value: Any, pattern: Any, escape: str | None = None) -> bool | None:
    """SQLite's LIKE: % and _, ASCII case-insensitive."""
    if value is None or pattern is None:
        return None
    return _like_regex(text_of(pattern), escape).fullmatch(text_of(value)) is not None


_LIKE_CACHE: dict[tuple[str, str | None], re.Pattern[str]] = {}


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    cached = _LIKE_CACHE.get((pattern, escape))
    if cached is not None:
        return cached
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if escape is not None and char == escape:
            parts.append(re.escape(next(chars, "")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    compiled = re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
    _LIKE_CACHE[(pattern, escape)] = compiled
    return compiled


def like_prefixes(pattern: str, most: int = 16) -> list[str] | None:
    """The literal prefixes a LIKE pattern's matches start with (LIKE ignores ASCII case).

    'c1%' gives ['C1', 'c1']; None when the pattern starts with a wildcard or its prefix has
    so many letters that more than `most` spellings would be read.
    """
    prefix = re.split(r"[%_]", pattern, maxsplit=1)[0]
    if not prefix or any(ord(c) > 127 for c in prefix):
        return None
    spellings = [""]
    for char in prefix:
        cases = sorted({char.upper(), char.lower()})
        spellings = [s + c for s in spellings for c in cases]
        if len(spellings) > most:
            return None
    return sorted(spellings)


def cast(value: Any, target: str) -> Value:
    """CAST(value AS target) with SQLite's conversions."""
    if value is None:
        return None
    affinity = affinity_of(target)
    if affinity == INTEGER:
        return sqlite_integer(value)
    if affinity == REAL:
        number = to_number(value)
        return float(number) if number is not None else None
    if affinity == TEXT:
        return text_of(value)
    if affinity == NUMERIC:
        number = to_number(value)
        if isinstance(number, float) and number.is_integer():
            return int(number)
        return number
    if affinity == BLOB:
        return value if isinstance(value, bytes) else text_of(value).encode()
    if affinity == DECIMAL and isinstance(value, str | bytes):
        value = numeric_prefix(value)  # as SQLite's cast reads text: 'abc' is 0, '12abc' 12
    typmod = decimal_typmod(target) if affinity == DECIMAL else None
    if typmod is not None:  # CAST(x AS NUMERIC(p, s)) rounds as a column of it stores
        return fit_decimal(apply_affinity(value, affinity), typmod)
    return apply_affinity(value, affinity)


_INTEGER_PREFIX = re.compile(r"[ \t\n\f\r\v]*([+-]?[0-9]+)")


def sqlite_integer(value: Any) -> int | None:
    """CAST(value AS INTEGER) as SQLite's: text's integer prefix (else 0; '1e3' is 1), a real
    truncated toward zero, either held to the 64-bit range (past it, the end of the range)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        match = _INTEGER_PREFIX.match(value)
        number = int(match.group(1)) if match is not None else 0
    else:
        real = to_number(value)
        if real is None:
            return None
        if isinstance(real, float | Decimal) and abs(real) == float("inf"):
            return _INT64[0] if real < 0 else _INT64[1]
        number = int(real)
    return max(_INT64[0], min(_INT64[1], number))


def type_name(value: Any) -> str:
    """SQLite's typeof()."""
    return {0: "null", 2: "text", 3: "blob", 4: "timestamp"}.get(
        kind(value), "integer" if isinstance(value, int) else "real"
    )
