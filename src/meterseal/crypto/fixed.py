"""Single-pass readers for the fixed byte shapes meterseal's own meters write (the hot path).

`open` and the audit spend most of their Python time taking apart bytes whose layout never
varies: a COSE_Encrypt with one ECDH-ES recipient around a COSE_Sign1 whose protected header
is {alg, kid, CWT {iat}} and whose payload is a plain reading. The general strict path
(`cose.loads_strict` and friends) decodes each layer into Python objects, decodes the
protected header and the reading again, and re-encodes the reading to prove it canonical.

These readers walk the bytes once instead. Each accepts exactly one encoding: the
deterministic one `seal` and `sign_reading` write, every integer and length in its shortest
form, keys in the order written, nothing after the last item. Anything else, however
valid, gives None, and the caller takes the general path, which decides alone what is
refused and why. So a reader never accepts what the general path refuses, and what it
returns equals what the general path would have produced from the same bytes (the property
tests in tests/crypto/test_fixed.py hold them to that). Nothing read here is trusted before
the caller has checked the AEAD tag and the meter's signature.

`signed_reading`, which an audit runs 2,880 times a bill, has a C twin (native/fixed.c,
the optional extension `meterseal.crypto._fixed`) that `signed_reading` uses when it is
built and MS_PURE_PYTHON_READER is not 1; tests/crypto/test_fixed_native.py holds it to
`py_signed_reading` on valid, mutated and random bytes.
"""

from __future__ import annotations

from typing import NamedTuple

from meterseal.errors import ReadingError
from meterseal.model import Reading
from meterseal.native import optional_extension

PURE_PYTHON_ENV = "MS_PURE_PYTHON_READER"

_SIG_STRUCTURE_HEAD = b"\x84\x6aSignature1"  # array(4), "Signature1"
_EMPTY_BSTR = b"\x40"  # external_aad
_READING_HEAD = b"\xa6\x00\x01\x01"  # map(6), version: 1
_ENCRYPT_HEAD = b"\xd8\x60\x84"  # tag 96, array(4)
_IV_HEAD = b"\xa1\x05\x4c"  # {5: bstr(12) …}
_IV_LENGTH = 12
_RECIPIENT_HEAD = b"\x81\x83\x44\xa1\x01\x38\x18\xa2\x20"  # [[<<{1: -25}>>, {-1: …
_EC2_KEY = b"\xa4\x01\x02\x20\x01\x21\x58\x20"  # {1: 2, -1: 1, -2: bstr(32) …
_EC2_Y = b"\x22\x58\x20"  # -3: bstr(32)
_OKP_KEY = b"\xa3\x01\x01\x20\x04\x21\x58\x20"  # {1: 1, -1: 4, -2: bstr(32)}
_COORD = 32
_X25519_P = 2**255 - 19
CURVE_P256 = "P-256"
CURVE_X25519 = "X25519"


_NATIVE = optional_extension("meterseal.crypto._fixed", PURE_PYTHON_ENV)
_native_read = _NATIVE.signed_reading if _NATIVE is not None else None
IMPLEMENTATION = "C" if _NATIVE is not None else "Python"


class _NotTheShape(Exception):
    """Internal: the bytes leave the fixed shape (the caller falls back to the general path)."""


# Literal byte checks for the fixed parts and two small head readers for the variable ones,
# rather than a general decoder: these run for every packet, where each Python call counts.


def _uint(data: bytes, i: int, base: int = 0x00) -> tuple[int, int]:
    """(argument, next offset) of the integer head at `i`, shortest form only.

    `base` 0x00 reads an unsigned integer, 0x20 a negative one's argument (its value is -1 - it).
    """
    b = data[i] - base
    if 0 <= b < 0x18:
        return b, i + 1
    if b == 0x18:
        value, end, low = data[i + 1], i + 2, 0x18
    elif b == 0x19:
        value, end, low = int.from_bytes(data[i + 1 : i + 3]), i + 3, 0x100
    elif b == 0x1A:
        value, end, low = int.from_bytes(data[i + 1 : i + 5]), i + 5, 0x10000
    elif b == 0x1B:
        value, end, low = int.from_bytes(data[i + 1 : i + 9]), i + 9, 0x100000000
    else:
        raise _NotTheShape
    if value < low or end > len(data):
        raise _NotTheShape
    return value, end


def _string(data: bytes, i: int, major: int) -> tuple[int, int]:
    """(start, end) of the content of the byte (major 2) or text (3) string at `i`."""
    b = data[i] - (major << 5)
    if 0 <= b < 0x18:
        start = i + 1
        end = start + b
    elif b == 0x18 and data[i + 1] >= 0x18:
        start = i + 2
        end = start + data[i + 1]
    elif b == 0x19 and data[i + 1]:
        start = i + 3
        end = start + int.from_bytes(data[i + 1 : i + 3])
    else:
        raise _NotTheShape
    if end > len(data):
        raise _NotTheShape
    return start, end


class SignedReading(NamedTuple):
    """A COSE_Sign1 over a reading, taken apart; nothing in it is verified yet.

    A tuple, not a frozen dataclass: it is built for every packet, and a frozen dataclass's
    constructor costs several times as much.
    """

    alg: int
    meter_id: str  # the kid, as UTF-8
    sent_at: int
    signature: bytes
    to_be_signed: bytes  # the Sig_structure
    payload: bytes | None  # the reading's bytes, when `reading` is still to be decoded
    reading: Reading | None  # trusted only once the signature holds


def signed_reading(data: bytes) -> SignedReading | None:
    """`data` read as our meters' COSE_Sign1 of a plain reading, or None if it is not that shape."""
    if _native_read is None:
        return py_signed_reading(data)
    parts = _native_read(data)
    if parts is None:
        return None
    negative, kid, sent_at, signature, tbs, meter_id, counter, timestamp, interval, wh = parts
    try:
        reading = Reading(meter_id, counter, timestamp, interval, wh)
    except ReadingError:
        return None
    return SignedReading(-1 - negative, kid, sent_at, signature, tbs, None, reading)


def py_signed_reading(data: bytes) -> SignedReading | None:
    """`signed_reading` in Python: the definition the C reader is held to."""
    try:
        return _signed_reading(data)
    except (_NotTheShape, IndexError, UnicodeDecodeError, ReadingError):
        return None


def _signed_reading(data: bytes) -> SignedReading:
    if data[0] != 0xD2 or data[1] != 0x84:  # tag 18, array(4)
        raise _NotTheShape
    p_start, p_end = _string(data, 2, 2)
    # Protected header: {1: alg (negative), 4: kid, 15: {6: iat}}
    if data[p_start] != 0xA3 or data[p_start + 1] != 0x01:
        raise _NotTheShape
    negative, i = _uint(data, p_start + 2, 0x20)
    if data[i] != 0x04:
        raise _NotTheShape
    k_start, k_end = _string(data, i + 1, 2)
    if not data.startswith(b"\x0f\xa1\x06", k_end):
        raise _NotTheShape
    sent_at, i = _uint(data, k_end + 3)
    if i != p_end or data[i] != 0xA0:  # and no unprotected headers
        raise _NotTheShape
    r_start, r_end = _string(data, i + 1, 2)
    reading = _reading(data, r_start, r_end)
    s_start, s_end = _string(data, r_end, 2)
    if s_end != len(data):
        raise _NotTheShape
    tbs = _SIG_STRUCTURE_HEAD + data[2:p_end] + _EMPTY_BSTR + data[i + 1 : r_end]
    return SignedReading(
        -1 - negative,
        data[k_start:k_end].decode("utf-8"),
        sent_at,
        data[s_start:s_end],
        tbs,
        None,
        reading,
    )


def _reading(data: bytes, i: int, end: int) -> Reading:
    """A plain (no phasor) reading, schema 1, keys 0…5 in order, all shortest form."""
    if not data.startswith(_READING_HEAD, i):
        raise _NotTheShape
    m_start, i = _string(data, i + 4, 3)
    meter_id = data[m_start:i].decode("utf-8")
    if data[i] != 2:
        raise _NotTheShape
    counter, i = _uint(data, i + 1)
    if data[i] != 3:
        raise _NotTheShape
    timestamp, i = _uint(data, i + 1)
    if data[i] != 4:
        raise _NotTheShape
    interval, i = _uint(data, i + 1)
    if data[i] != 5:
        raise _NotTheShape
    energy_wh, i = _uint(data, i + 1)
    if i != end:
        raise _NotTheShape
    return Reading(meter_id, counter, timestamp, interval, energy_wh)


class DirectEncrypt(NamedTuple):
    """A COSE_Encrypt with one ECDH-ES+HKDF-256 recipient and its ephemeral key, read at once."""

    content_alg: int
    protected: bytes  # the content layer's protected header bstr content
    iv: bytes
    ciphertext: bytes
    recipient_protected: bytes
    kid: bytes  # the head-end key the packet is sealed to
    curve: str  # CURVE_P256 or CURVE_X25519
    point: bytes  # P-256: 04 || x || y; X25519: the 32 raw bytes (canonical)


def direct_encrypt(blob: bytes) -> DirectEncrypt | None:
    """`blob` read as our meters' COSE_Encrypt with one ECDH-ES recipient, or None."""
    try:
        return _direct_encrypt(blob)
    except (_NotTheShape, IndexError):
        return None


def _direct_encrypt(blob: bytes) -> DirectEncrypt:
    if not blob.startswith(_ENCRYPT_HEAD):
        raise _NotTheShape
    p_start, p_end = _string(blob, 3, 2)
    # Protected header {1: content alg}, the alg a small unsigned integer.
    if blob[p_start] != 0xA1 or blob[p_start + 1] != 0x01:
        raise _NotTheShape
    content_alg, i = _uint(blob, p_start + 2)
    if i != p_end or not blob.startswith(_IV_HEAD, i):
        raise _NotTheShape
    iv_start = i + len(_IV_HEAD)
    c_start, c_end = _string(blob, iv_start + _IV_LENGTH, 2)
    x = c_end + len(_RECIPIENT_HEAD) + len(_EC2_KEY)  # both key shapes put x here
    if not blob.startswith(_RECIPIENT_HEAD, c_end):
        raise _NotTheShape
    if blob.startswith(_EC2_KEY, x - len(_EC2_KEY)):
        y = x + _COORD + len(_EC2_Y)
        if not blob.startswith(_EC2_Y, y - len(_EC2_Y)):
            raise _NotTheShape
        curve, point, i = CURVE_P256, b"\x04" + blob[x : x + _COORD] + blob[y : y + _COORD], y
    elif blob.startswith(_OKP_KEY, x - len(_OKP_KEY)):
        curve, point, i = CURVE_X25519, blob[x : x + _COORD], x
        if int.from_bytes(point, "little") >= _X25519_P:
            raise _NotTheShape  # not the one canonical encoding: the general path refuses it
    else:
        raise _NotTheShape
    i += _COORD
    if blob[i] != 0x04:
        raise _NotTheShape
    k_start, k_end = _string(blob, i + 1, 2)
    if blob[k_end:] != _EMPTY_BSTR:  # no wrapped key, then the end
        raise _NotTheShape
    return DirectEncrypt(
        content_alg,
        blob[p_start:p_end],
        blob[iv_start : iv_start + _IV_LENGTH],
        blob[c_start:c_end],
        blob[c_end + 3 : c_end + 7],
        blob[k_start:k_end],
        curve,
        point,
    )
