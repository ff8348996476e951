"""Object names of CascaDB's keys on the KVS: lowercase hex (order-preserving) and the intent."""

from __future__ import annotations

from meterseal.cascadb.errors import DataError

INTENT = "~batch"  # '~' sorts after the hex digits: never inside a key range
MAX_KEY_BYTES = 512  # names are at most 1024 bytes: two hex digits a key byte
PAGE = 1000  # names a listing asks for at a time


def name_of(key: bytes) -> str:
    """The object name of a key (lowercase hex: order-preserving)."""
    if not key or len(key) > MAX_KEY_BYTES:
        raise DataError(f"a key has 1 to {MAX_KEY_BYTES} bytes on the KVS, not {len(key)}")
    return key.hex()


def common_prefix(a: str, b: str) -> str:
    """The longest prefix the two names share."""
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return a[:length]
