"""Order-preserving, prefix-free key encoding of table ids, index ids and typed column values.

As CockroachDB and TiDB lay rows out, a key is the concatenation of self-delimiting encodings,
so comparing two keys byte by byte compares their values one by one, and a prefix of values is
a contiguous key range. Every value starts with a tag byte ordering the kinds as SQLite does:
NULL < numbers < text < bytes (< timestamps, which SQLite has not):

- numbers (int, float, Decimal) share one encoding, so 9 < 9.5 < 10 across the three: a class
  byte (negative, zero, positive), the decimal exponent in 4 bytes and the significant digits
  one a byte (1..10) closed by 0; a negative number's exponent and digits are complemented.
  A trailing byte says which Python type it was (ties between 1 and 1.0 go int first);
- text (UTF-8) and bytes: 0x00 escaped as 0x00 0xFF, closed by 0x00 0x01;
- timestamps: microseconds since the epoch (UTC), 8 bytes big-endian with the sign bit flipped.

No encoded value starts with 0xFF, so every key extending `prefix` lies in [prefix, prefix+FF).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from decimal import Decimal

from meterseal.cascadb.errors import DataError

Value = None | int | float | Decimal | str | bytes | dt.datetime

NULL_TAG = 0x05
NEGATIVE_TAG = 0x10
ZERO_TAG = 0x11
POSITIVE_TAG = 0x12
TEXT_TAG = 0x20
BYTES_TAG = 0x30
TIMESTAMP_TAG = 0x40
END = b"\xff"  # greater than every encoded value's first byte

_INT, _FLOAT, _DECIMAL = 0, 1, 2
_EXPONENT_BIAS = 1 << 31
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DIGITS_UP = bytes.maketrans(b"0123456789", bytes(range(1, 11)))
_DIGITS_DOWN = bytes.maketrans(bytes(range(1, 11)), b"0123456789")
_COMPLEMENT = bytes(255 - b for b in range(256))


def encode_key(values: Iterable[Value]) -> bytes:
    """The concatenated encodings of `values`: compares as the tuple of values does."""
    return b"".join(encode_value(v) for v in values)


def encode_value(value: Value) -> bytes:
    """The self-delimiting, order-preserving encoding of one value."""
    if value is None:
        return bytes((NULL_TAG,))
    if isinstance(value, bool):
        return _integer(int(value))
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise DataError(f"{value} cannot be a key value")
        return _number(Decimal(value), _FLOAT)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DataError(f"{value} cannot be a key value")
        return _number(value, _DECIMAL)
    if isinstance(value, str):
        return bytes((TEXT_TAG,)) + _escape(value.encode())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes((BYTES_TAG,)) + _escape(bytes(value))
    if isinstance(value, dt.datetime):
        return bytes((TIMESTAMP_TAG,)) + _flip(_micros(value))
    raise DataError(f"no key encoding for {type(value).__name__}")


def _integer(number: int) -> bytes:
    """`_number` of an int without going through Decimal (the common case: ids, times)."""
    if number == 0:
        return bytes((ZERO_TAG, _INT))
    text = str(abs(number)).encode()
    adjusted = len(text) + _EXPONENT_BIAS
    body = adjusted.to_bytes(4, "big") + text.rstrip(b"0").translate(_DIGITS_UP) + b"\x00"
    if number < 0:
        return bytes((NEGATIVE_TAG,)) + body.translate(_COMPLEMENT) + bytes((_INT,))
    return bytes((POSITIVE_TAG,)) + body + bytes((_INT,))


def _number(number: Decimal, kind: int) -> bytes:
    if number.is_zero():
        return bytes((ZERO_TAG, kind))
    sign, digits, exponent = number.as_tuple()  # normalize() would round to 28 digits
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).encode().lstrip(b"0")
    stripped = text.rstrip(b"0")
    adjusted = exponent + len(text) + _EXPONENT_BIAS  # value = 0.d1d2... x 10^adjusted
    text = stripped
    body = adjusted.to_bytes(4, "big") + text.translate(_DIGITS_UP) + b"\x00"
    if sign:
        return bytes((NEGATIVE_TAG,)) + body.translate(_COMPLEMENT) + bytes((kind,))
    return bytes((POSITIVE_TAG,)) + body + bytes((kind,))


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def _micros(stamp: dt.datetime) -> int:
    aware = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)
    delta = aware - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _flip(number: int) -> bytes:
    return (number + (1 << 63)).to_bytes(8, "big")


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (the encodings never start FF)."""
    return prefix + END


def decode_key(key: bytes, count: int | None = None) -> tuple[list[Value], int]:
    """Up to `count` values decoded from the start of `key`, and the offset after them."""
    values: list[Value] = []
    offset = 0
    while offset < len(key) and (count is None or len(values) < count):
        value, offset = decode_value(key, offset)
        values.append(value)
    return values, offset


def decode_value(key: bytes, offset: int = 0) -> tuple[Value, int]:
    """The value encoded at `offset` of `key` and the offset after it."""
    tag = key[offset]
    offset += 1
    if tag == NULL_TAG:
        return None, offset
    if tag == ZERO_TAG:
        return _typed(Decimal(0), key[offset]), offset + 1
    if tag in (POSITIVE_TAG, NEGATIVE_TAG):
        return _decode_number(key, offset, negative=tag == NEGATIVE_TAG)
    if tag in (TEXT_TAG, BYTES_TAG):
        raw, offset = _unescape(key, offset)
        return (raw.decode() if tag == TEXT_TAG else raw), offset
    if tag == TIMESTAMP_TAG:
        micros = int.from_bytes(key[offset : offset + 8], "big") - (1 << 63)
        return _EPOCH + dt.timedelta(microseconds=micros), offset + 8
    raise DataError(f"not an encoded key value (tag {tag:#x} at {offset - 1})")


def _decode_number(key: bytes, offset: int, *, negative: bool) -> tuple[Value, int]:
    closing = 0xFF if negative else 0x00
    stop = key.index(closing, offset + 4)
    body = key[offset:stop]
    if negative:
        body = body.translate(_COMPLEMENT)
    adjusted = int.from_bytes(body[:4], "big") - _EXPONENT_BIAS
    digits = body[4:].translate(_DIGITS_DOWN).decode()
    kind = key[stop + 1]
    if kind == _INT and adjusted >= len(digits):  # an integer: no Decimal on the way
        whole = int(digits) * 10 ** (adjusted - len(digits))
        return (-whole if negative else whole), stop + 2
    number = Decimal(f"{'-' if negative else ''}0.{digits}E{adjusted}")
    return _typed(number, kind), stop + 2


def _typed(number: Decimal, kind: int) -> Value:
    if kind == _INT:
        return int(number)
    if kind == _FLOAT:
        return float(number)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return Decimal(int(number))  # 100, not 1E+2 (the key keeps no trailing zeros)
    return number


def _unescape(key: bytes, offset: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        zero = key.index(b"\x00", offset)
        out += key[offset:zero]
        marker = key[zero + 1]
        if marker == 0x01:
            return bytes(out), zero + 2
        out.append(0)
        offset = zero + 2


@functools.lru_cache(maxsize=4096)
def table_prefix(table_id: int, index_id: int) -> bytes:
    """The prefix of every key of one index (index 1 is the table's primary key: its rows)."""
    return encode_key((table_id, index_id))


def key_of(table_id: int, index_id: int, values: Sequence[Value]) -> bytes:
    """The key of `values` in index `index_id` of table `table_id`."""
    return table_prefix(table_id, index_id) + encode_key(values)
