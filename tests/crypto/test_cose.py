"""Hand-built COSE structures equal what a general CBOR encoder produces."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.crypto import cose
from meterseal.errors import MetersealError


@given(st.binary(max_size=70_000), st.binary(max_size=300), st.binary(max_size=300))
def test_sig_structure1_matches_cbor2(payload: bytes, protected: bytes, aad: bytes) -> None:
    expected = cbor2.dumps(["Signature1", protected, aad, payload])
    assert cose.sig_structure1(protected, payload, aad) == expected


def test_envelope_header_cache_returns_the_same_decoding() -> None:
    protected = cbor2.dumps({1: -25})
    assert cose.envelope_header_map(protected) == cose.header_map(protected) == {1: -25}
    assert cose.envelope_header_map(b"") == {}


def test_malformed_bytes_are_a_meterseal_error_with_diagnostics() -> None:
    # The CLI's main() and the services report any MetersealError; no caller translates.
    with pytest.raises(MetersealError) as caught:
        cose.loads_strict(b"\xa1\x01")  # a map missing its value
    assert isinstance(caught.value, cose.CoseFormatError)
    assert caught.value.diagnostics() == "malformed CBOR or COSE: not CBOR"
    with pytest.raises(cose.CoseFormatError, match="trailing bytes"):
        cose.loads_strict(b"\x01\x02")
