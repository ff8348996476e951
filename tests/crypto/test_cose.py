"""Hand-built COSE structures equal what a general CBOR encoder produces."""

from __future__ import annotations

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from meterseal.crypto import cose


@given(st.binary(max_size=70_000), st.binary(max_size=300), st.binary(max_size=300))
def test_sig_structure1_matches_cbor2(payload: bytes, protected: bytes, aad: bytes) -> None:
    expected = cbor2.dumps(["Signature1", protected, aad, payload])
    assert cose.sig_structure1(protected, payload, aad) == expected


def test_envelope_header_cache_returns_the_same_decoding() -> None:
    protected = cbor2.dumps({1: -25})
    assert cose.envelope_header_map(protected) == cose.header_map(protected) == {1: -25}
    assert cose.envelope_header_map(b"") == {}
