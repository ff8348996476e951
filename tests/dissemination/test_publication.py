"""Publications: header round trip, strict decoding, and the header authenticated by the AEAD."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings

from meterseal.dissemination.errors import CannotDecrypt, MalformedPublication, Reason
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.publication import Header, decode_header, split_publication
from tests.dissemination.conftest import CUSTOMERS, World, reading
from tests.dissemination.strategies import headers


@settings(max_examples=200)
@given(headers())
def test_headers_round_trip_canonically(header: Header) -> None:
    encoded = header.encode()
    fields = decode_header(encoded)
    assert Header.from_fields(fields) == header
    assert cbor2.dumps(fields, canonical=True) == encoded


GOOD = Header(PrivacyLevel.HIGH, "reading", "p", 1, 5, "R01", b"\x01", 0, 900).fields()


def _with(index: int, value: object) -> bytes:
    fields = list(GOOD)
    fields[index] = value
    return cbor2.dumps(fields)


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\xff",
        cbor2.dumps({"level": 3}),
        cbor2.dumps(GOOD[:-1]),
        _with(0, 2),
        _with(1, 7),
        _with(1, True),
        _with(2, ""),
        _with(2, 5),
        _with(3, "x" * 65),
        _with(4, -1),
        _with(4, 2**64),
        _with(5, 1.5),
        _with(7, "text"),
        _with(7, b"\x00" * 33),
        _with(12, {"region": "R02"}),
        _with(12, {"x": 1.5}),
        _with(12, {"x": [1]}),
        _with(12, {f"a{i}": 1 for i in range(17)}),
        _with(12, []),
        b"\x9f" * 5000,
        cbor2.dumps(GOOD) + b"\x00",
    ],
)
def test_malformed_headers_are_refused_with_a_reason(encoded: bytes) -> None:
    with pytest.raises(MalformedPublication) as refused:
        decode_header(encoded)
    assert refused.value.reason is Reason.MALFORMED_PUBLICATION


@pytest.mark.parametrize(
    "item", [None, [], [b"h"], [b"h", "s"], [b"h", b"short"], (b"h", b"s" * 40)]
)
def test_malformed_publications_are_refused(item: object) -> None:
    with pytest.raises(MalformedPublication):
        split_publication(item)


def test_a_changed_header_byte_makes_the_payload_unreadable(world: World) -> None:
    headend = world.publisher()
    agg = world.join("agg", Role.AGGREGATOR)
    header, sealed = reading(headend, CUSTOMERS[0], 0, 42)
    assert agg.open([header, sealed]).values == {"wh": 42}
    fields = decode_header(header)
    fields[6] = "R02"  # another region, same key id
    with pytest.raises(CannotDecrypt) as refused:
        agg.open([cbor2.dumps(fields, canonical=True), sealed])
    assert refused.value.reason is Reason.DECRYPT_FAILED
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(CannotDecrypt):
        agg.open([header, bytes(flipped)])
