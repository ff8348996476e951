"""COSE (RFC 9052/9053) structures on cbor2: strict decoding, to-be-signed and AAD builders."""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from meterseal.errors import MetersealError

# Header labels (RFC 9052 section 3.1; RFC 9597 for CWT claims in headers).
ALG = 1
KID = 4
IV = 5
EPHEMERAL_KEY = -1
CWT_CLAIMS = 15
CLAIM_IAT = 6

TAG_SIGN1 = 18
TAG_ENCRYPT0 = 16
TAG_ENCRYPT = 96

# COSE_Key labels (RFC 9053 section 7).
KTY = 1
KTY_OKP = 1
KTY_EC2 = 2
CRV = -1
X = -2
Y = -3
CRV_P256 = 1
CRV_X25519 = 4


# Concrete types, not collections.abc: an ABC isinstance check costs microseconds per call on
# the hot path, and cbor2 decodes maps and arrays inside tags as frozendict and tuple.
MAP_TYPES = (dict, cbor2.frozendict)
ARRAY_TYPES = (list, tuple)


class CoseFormatError(MetersealError, ValueError):
    """The bytes are not the CBOR or COSE structure expected (a ValueError too: a bad value).

    Readers of a remote sender's bytes turn it into the opaque InvalidPacket (or their
    protocol's refusal); readers of a named document raise that document's format error.
    """

    def diagnostics(self) -> str:
        """What was malformed."""
        return f"malformed CBOR or COSE: {self}"


def loads_strict(data: bytes) -> Any:
    """Decode exactly one definite-length CBOR item without duplicate map keys or trailing bytes."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(
            stream, allow_duplicate_keys=False, allow_indefinite=False
        ).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise CoseFormatError("not CBOR") from exc
    if stream.tell() != len(data):
        raise CoseFormatError("trailing bytes after CBOR item")
    return item


def dumps(obj: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 section 4.2.1 core rules as cbor2 implements them)."""
    return cbor2.dumps(obj, canonical=True)


def untag(item: Any, tag: int) -> Sequence[Any]:
    """Return the array inside CBOR tag `tag`, refusing any other tag or shape."""
    if (
        not isinstance(item, cbor2.CBORTag)
        or item.tag != tag
        or not isinstance(item.value, ARRAY_TYPES)
    ):
        raise CoseFormatError(f"expected COSE tag {tag}")
    return item.value


@functools.lru_cache(maxsize=256)
def _cached_header_map(protected: bytes) -> Mapping[int, Any]:
    return header_map(protected)


def envelope_header_map(protected: Any) -> Mapping[int, Any]:
    """`header_map` memoised: the envelope's protected headers repeat from packet to packet.

    The result is shared between calls, so callers must not mutate it (cbor2 returns a
    frozendict only inside tags, so take care with what is cached: only bytes keys).
    """
    if not isinstance(protected, bytes) or len(protected) > 64:
        return header_map(protected)
    return _cached_header_map(protected)


def header_map(protected: Any) -> Mapping[int, Any]:
    """Decode a protected-header bstr (empty bstr means an empty map)."""
    if not isinstance(protected, bytes):
        raise CoseFormatError("protected header must be a bstr")
    if protected == b"":
        return {}
    value = loads_strict(protected)
    if not isinstance(value, MAP_TYPES) or not value:
        raise CoseFormatError("protected header must be a non-empty map or h''")
    return value


def expect_map(value: Any, allowed: frozenset[int], required: frozenset[int]) -> Mapping[int, Any]:
    """Check a header map's labels: all `required` present, nothing beyond `allowed`."""
    if not isinstance(value, MAP_TYPES):
        raise CoseFormatError("header must be a map")
    keys = set(value)
    if not required <= keys or not keys <= allowed:
        raise CoseFormatError(f"unexpected header labels {sorted(keys, key=repr)}")
    return value


def expect_bytes(value: Any, length: int | None = None) -> bytes:
    """Return `value` as bytes, optionally of an exact length."""
    if not isinstance(value, bytes) or (length is not None and len(value) != length):
        raise CoseFormatError("expected a byte string" + (f" of {length} bytes" if length else ""))
    return value


def _bstr(data: bytes) -> bytes:
    """CBOR byte string: head (major type 2, shortest length form) and content."""
    n = len(data)
    if n < 24:
        return bytes((0x40 | n,)) + data
    if n < 0x100:
        return bytes((0x58, n)) + data
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big") + data
    return b"\x5a" + n.to_bytes(4, "big") + data


_SIGNATURE1_HEAD = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"


def sig_structure1(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The ToBeSigned bytes of a COSE_Sign1 (RFC 9052 section 4.4), built without cbor2.

    Hand-built because it runs for every packet; tests check it equals cbor2's encoding.
    """
    return _SIGNATURE1_HEAD + _bstr(protected) + _bstr(external_aad) + _bstr(payload)


@functools.lru_cache(maxsize=256)
def enc_structure(context: str, protected: bytes, external_aad: bytes = b"") -> bytes:
    """The AAD of a COSE_Encrypt/Encrypt0 content layer (RFC 9052 section 5.3)."""
    return cbor2.dumps([context, protected, external_aad])


@functools.lru_cache(maxsize=256)
def kdf_context(algorithm: int, key_bits: int, recipient_protected: bytes) -> bytes:
    """COSE_KDF_Context with empty party info (RFC 9053 section 5.2), the HKDF `info`."""
    nil_party = [None, None, None]
    return cbor2.dumps([algorithm, nil_party, nil_party, [key_bits, recipient_protected]])


@dataclass(frozen=True, slots=True)
class Sign1:
    """A parsed COSE_Sign1: raw protected bytes, decoded headers, payload and signature."""

    protected: bytes
    headers: Mapping[int, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        """The Sig_structure this signature covers."""
        return sig_structure1(self.protected, self.payload)

    def encode(self) -> bytes:
        """Tagged COSE_Sign1 bytes."""
        return cbor2.dumps(
            cbor2.CBORTag(
                TAG_SIGN1, [self.protected, self.unprotected, self.payload, self.signature]
            )
        )


def parse_sign1(data: bytes) -> Sign1:
    """Parse a tagged COSE_Sign1 with an attached payload."""
    fields = untag(loads_strict(data), TAG_SIGN1)
    if len(fields) != 4:
        raise CoseFormatError("COSE_Sign1 has four fields")
    protected, unprotected, payload, signature = fields
    if not isinstance(unprotected, MAP_TYPES):
        raise CoseFormatError("unprotected header must be a map")
    headers = header_map(protected)
    return Sign1(protected, headers, unprotected, expect_bytes(payload), expect_bytes(signature))
