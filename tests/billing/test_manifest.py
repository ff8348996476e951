"""The manifest's hand-written encoder against the general deterministic CBOR encoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.bill import (
    BillFormatError,
    ManifestEntry,
    encode_manifest,
    manifest_from_cbor,
    manifest_to_cbor,
)
from meterseal.billing.compute import BillPacket, ComputedBill
from meterseal.crypto import cose

entries = st.builds(
    ManifestEntry,
    st.text(min_size=1, max_size=70),
    st.integers(0, 2**63 - 1) | st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32]),
    st.binary(min_size=32, max_size=32),
)


@given(st.lists(entries, max_size=300))
def test_manifest_bytes_are_the_deterministic_cbor_and_decode_back(
    manifest: list[ManifestEntry],
) -> None:
    data = manifest_to_cbor(manifest)
    assert data == cose.dumps([[e.meter_id, e.counter, e.leaf_hash] for e in manifest])
    assert manifest_from_cbor(data) == tuple(manifest)


@given(
    st.builds(
        ManifestEntry,
        st.text(min_size=1, max_size=8),
        st.integers(max_value=-1) | st.integers(min_value=2**64) | st.booleans(),
        st.binary(max_size=40).filter(lambda b: len(b) != 32),
    )
)
def test_an_entry_off_the_shape_is_encoded_as_it_is_and_refused_on_decoding(
    entry: ManifestEntry,
) -> None:
    data = manifest_to_cbor([entry])
    assert data == cose.dumps([list(entry)])
    with pytest.raises(BillFormatError):
        manifest_from_cbor(data)


@given(st.lists(entries, max_size=50))
def test_the_manifest_of_a_computed_bill_is_its_entries_encoded(
    manifest: list[ManifestEntry],
) -> None:
    packets = [BillPacket(e.meter_id, e.counter, 0, 0, b"") for e in manifest]
    computed = ComputedBill(None, packets, [e.leaf_hash for e in manifest])  # type: ignore[arg-type]
    assert computed.manifest() == tuple(manifest)
    assert computed.manifest_cbor() == manifest_to_cbor(manifest)


def test_manifest_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        encode_manifest(["M-1"], [1, 2], [b"\0" * 32])


@pytest.mark.parametrize(
    "items",
    [
        {"M-1": 1},
        [["M-1", 1]],
        [["M-1", 1, b"\0" * 32, 0]],
        [("M-1", 1, b"\0" * 32), "M-1"],
        [["M-1", 1, b"\0" * 32], ["M-2", 2, "x" * 32]],
        [["M-1", 1.0, b"\0" * 32]],
        [[b"M-1", 1, b"\0" * 32]],
    ],
)
def test_a_manifest_of_another_shape_is_refused(items: object) -> None:
    with pytest.raises(BillFormatError, match="not a bill manifest"):
        manifest_from_cbor(cose.dumps(items))


def test_an_empty_manifest_decodes_to_no_entries() -> None:
    assert manifest_from_cbor(cose.dumps([])) == ()
