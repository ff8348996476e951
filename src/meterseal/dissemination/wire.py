"""Canonical CBOR for the hot path's few shapes, and the packed batches that frames carry.

cbor2 costs about 2 µs per `dumps` call whatever the size (more for arrays), which is most of
a publication's budget at 20,000/s. The header and the small payloads have a fixed shape, so
they are encoded here by hand, byte for byte what `cbor2.dumps(value, canonical=True)` gives
(RFC 8949 §4.2.1: shortest heads, definite lengths, map keys in bytewise order of their
encodings); anything else falls back to cbor2. Tests hold the two to the same bytes.

A batch of publications travels as `pack(elements)`: a flat list of byte strings (header,
sealed, header, sealed, …) as a count, a table of lengths and the bytes, one copy each way.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, Final

import cbor2

_ONE: Final = tuple(bytes((i,)) for i in range(256))
_U64: Final = 2**64
_TEXT_CACHE_LIMIT: Final = 4096
_texts: dict[str, bytes] = {}
EMPTY_MAP: Final = b"\xa0"


def head(major: int, n: int) -> bytes:
    """The shortest head of major type `major` (0..7) and argument `n` (0 <= n < 2**64)."""
    mt = major << 5
    if n < 24:
        return _ONE[mt | n]
    if n < 0x100:
        return _ONE[mt | 24] + _ONE[n]
    if n < 0x10000:
        return _ONE[mt | 25] + n.to_bytes(2, "big")
    if n < 0x100000000:
        return _ONE[mt | 26] + n.to_bytes(4, "big")
    return _ONE[mt | 27] + n.to_bytes(8, "big")


def uint(n: int) -> bytes:
    """Canonical CBOR of an unsigned integer below 2**64."""
    if n < 24:
        return _ONE[n]
    if n < 0x100:
        return b"\x18" + _ONE[n]
    if n < 0x10000:
        return b"\x19" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x1a" + n.to_bytes(4, "big")
    return b"\x1b" + n.to_bytes(8, "big")


def text(value: str) -> bytes:
    """Canonical CBOR of a text string (short ones cached: types, publishers, regions)."""
    encoded = _texts.get(value)
    if encoded is None:
        raw = value.encode()
        encoded = head(3, len(raw)) + raw
        if len(raw) <= 64:
            if len(_texts) >= _TEXT_CACHE_LIMIT:
                _texts.clear()
            _texts[value] = encoded
    return encoded


def byte_string(value: bytes) -> bytes:
    """Canonical CBOR of a byte string."""
    n = len(value)
    return (_ONE[0x40 | n] if n < 24 else head(2, n)) + value


def _item(value: object) -> bytes | None:
    """Canonical CBOR of a simple payload value, or None when cbor2 must do it."""
    kind = type(value)
    if kind is int:
        n: int = value  # type: ignore[assignment]
        if 0 <= n < _U64:
            return uint(n)
        if -_U64 <= n < 0:
            return head(1, -1 - n)
        return None
    if kind is str:
        return text(value)  # type: ignore[arg-type]
    if kind is bytes:
        return byte_string(value)  # type: ignore[arg-type]
    if value is None:
        return b"\xf6"
    return None  # floats, bools, containers: cbor2 picks their canonical form


def encode_map(values: Mapping[str, Any]) -> bytes:
    """Canonical CBOR of a map of text keys to ints, text, bytes or None (else via cbor2)."""
    if len(values) == 1:  # a reading's {"wh": n}
        for key, value in values.items():
            if type(key) is str and type(value) is int and 0 <= value < _U64:
                return b"\xa1" + text(key) + uint(value)
    pairs = []
    for key, value in values.items():
        encoded = _item(value)
        if encoded is None or type(key) is not str:
            return bytes(cbor2.dumps(dict(values), canonical=True))
        pairs.append((text(key), encoded))
    if len(pairs) > 1:
        pairs.sort()
    return b"".join([head(5, len(pairs)), *(k + v for k, v in pairs)])


def header_prefix(level: int, kind: str, publisher: str) -> bytes:
    """The fixed start of a header: array(13), version 1, level, type, publisher."""
    return b"\x8d\x01" + _ONE[level] + text(kind) + text(publisher)


def encode_header(fields: Sequence[Any]) -> bytes:
    """Canonical CBOR of a valid header array (see publication.HEADER_FIELDS)."""
    _, level, kind, publisher, seq, at, region, customer, start, interval, epoch, cepoch, attrs = (
        fields
    )
    if attrs:
        return bytes(cbor2.dumps(list(fields), canonical=True))
    return b"".join(
        (
            header_prefix(level, kind, publisher),
            uint(seq),
            uint(at),
            text(region),
            byte_string(customer),
            uint(start),
            uint(interval),
            uint(epoch),
            uint(cepoch),
            EMPTY_MAP,
        )
    )


# -- packed batches -------------------------------------------------------------------------

_LENGTH_CODE = "I" if array("I").itemsize == 4 else "L"
_SWAP = sys.byteorder != "little"
COUNT_BYTES: Final = 4


def pack(elements: Sequence[bytes]) -> bytes:
    """`elements` as count (u32 LE), lengths (u32 LE each) and the bytes one after another."""
    lengths = array(_LENGTH_CODE, map(len, elements))
    if _SWAP:
        lengths.byteswap()
    return len(elements).to_bytes(COUNT_BYTES, "little") + lengths.tobytes() + b"".join(elements)


def pairs(elements: Sequence[bytes]) -> list[list[bytes]]:
    """A flat batch as `[header, sealed]` items (a trailing odd element is dropped)."""
    return [[elements[i], elements[i + 1]] for i in range(0, len(elements) - 1, 2)]


def unpack(body: bytes, limit: int) -> list[bytes] | None:
    """The elements of a packed batch of at most `limit`, or None if it is not one."""
    if len(body) < COUNT_BYTES:
        return None
    count = int.from_bytes(body[:COUNT_BYTES], "little")
    start = COUNT_BYTES + 4 * count
    if count > limit or start > len(body):
        return None
    lengths = array(_LENGTH_CODE)
    lengths.frombytes(body[COUNT_BYTES:start])
    if _SWAP:
        lengths.byteswap()
    if sum(lengths) != len(body) - start:
        return None
    out: list[bytes] = []
    append = out.append
    for n in lengths:
        end = start + n
        append(body[start:end])
        start = end
    return out
