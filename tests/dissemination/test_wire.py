"""The hand-written canonical CBOR is cbor2's canonical CBOR, byte for byte; packed batches."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.dissemination.errors import MalformedPublication
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.publication import Header, decode_header, encode_payload
from meterseal.dissemination.wire import (
    encode_header,
    encode_map,
    header_prefix,
    pack,
    pairs,
    unpack,
)
from tests.dissemination.strategies import headers

u63 = st.integers(0, 2**63 - 1)
short_text = st.text(max_size=64)
payload_values = (
    st.integers(-(2**64), 2**64 - 1)
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.none()
    | st.floats(allow_nan=False)
    | st.booleans()
)


any_header = st.builds(
    Header,
    st.sampled_from(list(PrivacyLevel)),
    short_text.filter(bool),
    short_text.filter(bool),
    u63,
    u63,
    short_text,
    st.binary(max_size=32),
    u63,
    u63,
    u63,
    u63,
)


@settings(max_examples=300)
@given(any_header)
def test_headers_encode_exactly_as_cbor2_canonical(header: Header) -> None:
    fields = header.fields()
    assert encode_header(fields) == cbor2.dumps(fields, canonical=True)
    assert decode_header(encode_header(fields)) == fields


@settings(max_examples=100)
@given(headers())
def test_headers_with_attributes_too(header: Header) -> None:
    fields = header.fields()
    assert encode_header(fields) == cbor2.dumps(fields, canonical=True)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=30), payload_values, max_size=6))
def test_payload_maps_encode_exactly_as_cbor2_canonical(values: dict[str, object]) -> None:
    assert encode_map(values) == cbor2.dumps(values, canonical=True)
    assert encode_payload(values) == cbor2.dumps(values, canonical=True)  # type: ignore[arg-type]


GOOD = Header(PrivacyLevel.HIGH, "reading", "p", 1, 5, "R01", b"\x01", 0, 900).fields()
CANONICAL = cbor2.dumps(GOOD, canonical=True)


def _splice(old: bytes, new: bytes) -> bytes:
    assert CANONICAL.count(old) == 1
    return CANONICAL.replace(old, new)


@pytest.mark.parametrize(
    "encoded",
    [
        _splice(b"\x19\x03\x84", b"\x1a\x00\x00\x03\x84"),  # interval 900 in a longer head
        _splice(b"cR01", b"\x7f\x63R01\xff"),  # indefinite-length text
        _splice(b"\x8d\x01", b"\x98\x0d\x01"),  # array length in a longer head
        _splice(b"\xa0", b"\xbf\xff"),  # indefinite empty map
        _splice(b"\x00\xa0", b"\xc2\x41\x00\xa0"),  # cepoch 0 as a tagged bignum
        CANONICAL + b"\x00",  # trailing bytes
    ],
)
def test_the_router_refuses_headers_that_are_not_canonical(encoded: bytes) -> None:
    assert cbor2.loads(encoded) == GOOD  # the same value, other bytes
    with pytest.raises(MalformedPublication, match="canonical"):
        decode_header(encoded)
    assert decode_header(encoded, strict=False) == GOOD  # a member's non-strict view


def test_a_bignum_shorter_than_canonical_cannot_pay_for_a_longer_head() -> None:
    # `at` = 2**40 is 9 bytes canonically but 8 as a bignum; spend the byte saved on `seq`:
    # the lengths match, the bytes do not.
    fields = list(GOOD)
    fields[5] = 2**40
    prefix = header_prefix(3, "reading", "p")
    canonical = encode_header(fields)
    rest = canonical[len(prefix) + 1 + 9 :]
    assert canonical == prefix + b"\x01" + b"\x1b" + (2**40).to_bytes(8, "big") + rest
    sneaky = prefix + b"\x18\x01" + b"\xc2\x46" + (2**40).to_bytes(6, "big") + rest
    assert len(sneaky) == len(canonical)
    assert cbor2.loads(sneaky) == fields
    with pytest.raises(MalformedPublication, match="canonical"):
        decode_header(sneaky)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=70), max_size=40))
def test_packed_batches_round_trip(elements: list[bytes]) -> None:
    assert unpack(pack(elements), 40) == elements
    assert unpack(pack(elements), len(elements) - 1) is None or not elements


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_unpacking_any_bytes_gives_a_batch_or_none(body: bytes) -> None:
    elements = unpack(body, 1_000)
    assert elements is None or pack(elements) == body


def test_pairs_of_a_flat_batch() -> None:
    assert pairs([b"h1", b"s1", b"h2", b"s2"]) == [[b"h1", b"s1"], [b"h2", b"s2"]]
    assert pairs([b"h1", b"s1", b"odd"]) == [[b"h1", b"s1"]]
