"""Publications: a header the router matches on, and a payload only key holders can read.

Wire form (canonical CBOR): a publication is `[header, sealed]`, both byte strings.
`header` is the canonical CBOR array of `HEADER_FIELDS` below (encoded by `wire`);
`sealed` is a 12-byte nonce followed by the AES-256-GCM ciphertext of the payload (a CBOR
map of values) under the key the header names (level, epoch, customer epoch), with the
header bytes as associated data, so that a router or transport that changes one header byte
makes the payload unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import cbor2

from meterseal.dissemination.errors import MalformedPublication
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.wire import encode_header, encode_map

VERSION: Final = 1
NONCE_LENGTH: Final = 12
TAG_LENGTH: Final = 16
MAX_HEADER: Final = 1024
MAX_SEALED: Final = 16_384
MAX_TEXT: Final = 64
MAX_ATTRS: Final = 16
PSEUDONYM_MAX: Final = 32

# Position of each named attribute in the decoded header array (0 is the version).
HEADER_FIELDS: Final = (
    "version",
    "level",
    "type",
    "publisher",
    "seq",
    "at",
    "region",
    "customer",
    "start",
    "interval",
    "epoch",
    "cepoch",
    "attrs",
)
POSITION: Final = {name: i for i, name in enumerate(HEADER_FIELDS)}
ATTRS: Final = POSITION["attrs"]
_TEXT_FIELDS = ("type", "publisher", "region")
_INT_FIELDS = ("seq", "at", "start", "interval", "epoch", "cepoch")
AttrValue = int | str | bytes

Value = int | float | str | bytes | None
Payload = Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class Header:
    """What routing needs: level, type, who published, and the data's coordinates.

    `at` is the publisher's clock in microseconds; `customer` is the customer's pseudonym
    (empty when the data is regional); `epoch`/`cepoch` name the key that sealed the payload.
    """

    level: PrivacyLevel
    type: str
    publisher: str
    seq: int
    at: int
    region: str = ""
    customer: bytes = b""
    start: int = 0
    interval: int = 0
    epoch: int = 0
    cepoch: int = 0
    attrs: Mapping[str, AttrValue] = field(default_factory=dict)

    def fields(self) -> list[Any]:
        """The header as its CBOR array."""
        return [
            VERSION,
            int(self.level),
            self.type,
            self.publisher,
            self.seq,
            self.at,
            self.region,
            self.customer,
            self.start,
            self.interval,
            self.epoch,
            self.cepoch,
            dict(self.attrs),
        ]

    def encode(self) -> bytes:
        """Canonical CBOR of the header (what the payload's AEAD authenticates)."""
        fields = self.fields()
        validate_fields(fields)  # a publisher must not emit what routers refuse
        return encode_header(fields)

    def attributes(self) -> dict[str, AttrValue]:
        """Every matchable attribute by name (fixed fields, then the extra `attrs`)."""
        named: dict[str, AttrValue] = dict(self.attrs)
        named.update(zip(HEADER_FIELDS[1:ATTRS], self.fields()[1:ATTRS], strict=True))
        return named

    @classmethod
    def from_fields(cls, fields: Sequence[Any]) -> Header:
        """The header a validated CBOR array holds."""
        kind, publisher, seq, at, region, customer, start, interval, epoch, cepoch = fields[2:ATTRS]
        return cls(
            PrivacyLevel(fields[1]), kind, publisher, seq, at, region, customer, start,
            interval, epoch, cepoch, dict(fields[ATTRS]),
        )  # fmt: skip


def _is_int(value: object) -> bool:
    return type(value) is int


def _fail(detail: str) -> MalformedPublication:
    return MalformedPublication(detail)


def _check_attrs(attrs: object) -> None:
    if type(attrs) is not dict or len(attrs) > MAX_ATTRS:
        raise _fail(f"attrs must be a map of at most {MAX_ATTRS} entries")
    for name, value in attrs.items():
        if type(name) is not str or not 0 < len(name) <= MAX_TEXT or name in POSITION:
            raise _fail(f"attribute name {name!r} is not allowed")
        if type(value) not in (int, str, bytes) or (
            type(value) is not int and len(value) > MAX_TEXT
        ):
            raise _fail(f"attribute {name} must be an int, or text or bytes of <= {MAX_TEXT}")


_LEVELS = frozenset(int(level) for level in PrivacyLevel)
_BOUND = 2**63


def validate_fields(fields: object) -> list[Any]:
    """`fields` if it is a well-formed header array, else MalformedPublication.

    One unrolled pass for the router's hot path; `_explain` names what is wrong.
    """
    if type(fields) is not list or len(fields) != 13:
        _explain(fields)
    _, level, kind, publisher, seq, at, region, customer, start, interval, epoch, cepoch, attrs = (
        fields
    )
    if (
        fields[0] != VERSION
        or type(fields[0]) is not int
        or type(level) is not int
        or level not in _LEVELS
        or type(kind) is not str
        or type(publisher) is not str
        or type(region) is not str
        or not 0 < len(kind) <= MAX_TEXT
        or not 0 < len(publisher) <= MAX_TEXT
        or len(region) > MAX_TEXT
        or type(customer) is not bytes
        or len(customer) > PSEUDONYM_MAX
        or type(seq) is not int
        or type(at) is not int
        or type(start) is not int
        or type(interval) is not int
        or type(epoch) is not int
        or type(cepoch) is not int
        or not 0 <= seq < _BOUND
        or not 0 <= at < _BOUND
        or not 0 <= start < _BOUND
        or not 0 <= interval < _BOUND
        or not 0 <= epoch < _BOUND
        or not 0 <= cepoch < _BOUND
        or type(attrs) is not dict
    ):
        _explain(fields)
    if attrs:
        _check_attrs(attrs)
    return fields


def _explain(fields: object) -> NoReturn:
    """Raise MalformedPublication naming the first thing wrong with a header array."""
    if type(fields) is not list or len(fields) != len(HEADER_FIELDS):
        raise _fail(f"header must be an array of {len(HEADER_FIELDS)}")
    if fields[0] != VERSION or not _is_int(fields[0]):
        raise _fail(f"unknown header version {fields[0]!r}")
    if not _is_int(fields[1]) or fields[1] not in PrivacyLevel._value2member_map_:
        raise _fail(f"unknown privacy level {fields[1]!r}")
    for name in _TEXT_FIELDS:
        value = fields[POSITION[name]]
        if type(value) is not str or len(value) > MAX_TEXT:
            raise _fail(f"{name} must be text of <= {MAX_TEXT} characters")
    for name in _INT_FIELDS:
        value = fields[POSITION[name]]
        if not _is_int(value) or not 0 <= value < 2**63:
            raise _fail(f"{name} must be an unsigned 63-bit integer")
    customer = fields[POSITION["customer"]]
    if type(customer) is not bytes or len(customer) > PSEUDONYM_MAX:
        raise _fail(f"customer must be a pseudonym of <= {PSEUDONYM_MAX} bytes")
    if not fields[POSITION["type"]] or not fields[POSITION["publisher"]]:
        raise _fail("type and publisher must not be empty")
    _check_attrs(fields[ATTRS])
    raise _fail("malformed header")


def decode_header(encoded: object, *, strict: bool = True) -> list[Any]:
    """The validated field array of a header's bytes; MalformedPublication otherwise.

    Strict (the router, facing anyone): the bytes must be the canonical CBOR of what they
    decode to, so one definite-length item, shortest heads, no tags, no duplicate map keys
    and no trailing bytes. A member may skip strictness for what it then decrypts, as the
    AEAD authenticates the exact header bytes a key holder sealed.
    """
    if type(encoded) is not bytes or len(encoded) > MAX_HEADER:
        raise _fail(f"header must be a byte string of <= {MAX_HEADER} bytes")
    try:
        fields = cbor2.loads(encoded)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise _fail(f"header is not CBOR ({exc.__class__.__name__})") from exc
    validate_fields(fields)
    if strict and encode_header(fields) != encoded:
        raise _fail("header is not canonical CBOR (or has trailing bytes)")
    return fields  # type: ignore[no-any-return]


def split_publication(item: object) -> tuple[bytes, bytes]:
    """(header bytes, sealed payload) of one publication `[header, sealed]`."""
    if type(item) is not list or len(item) != 2:
        raise _fail("a publication is an array [header, sealed]")
    header, sealed = item
    if type(header) is not bytes or type(sealed) is not bytes:
        raise _fail("header and sealed payload must be byte strings")
    if not NONCE_LENGTH + TAG_LENGTH <= len(sealed) <= MAX_SEALED:
        raise _fail(f"sealed payload must hold a nonce and a tag and be <= {MAX_SEALED} bytes")
    return header, sealed


def encode_payload(values: Payload) -> bytes:
    """The canonical CBOR map that gets sealed."""
    return encode_map(values)


def decode_payload(plaintext: bytes) -> dict[str, Value]:
    """The values of an opened payload; MalformedPublication if it is not a text-keyed map."""
    try:
        values = cbor2.loads(plaintext)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise _fail("payload is not CBOR") from exc
    if type(values) is not dict or not all(type(k) is str for k in values):
        raise _fail("payload must be a map with text keys")
    return values
