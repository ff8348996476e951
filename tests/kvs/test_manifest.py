"""Manifests: CBOR round trips, byte-range spans, repairs that move one blob."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.manifest import (
    Blob,
    ChunkEntry,
    Manifest,
    chunk_spans,
    decode_manifest,
    encode_manifest,
)
from meterseal.kvs.policy import ErasureCoded, Hybrid, Policy, Replication, chunk_sizes

blobs = st.builds(
    Blob,
    st.sampled_from(["n1", "n2", "n3"]),
    st.text("0123456789abcdef", min_size=8, max_size=32),
    st.binary(min_size=16, max_size=16),
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    size = draw(st.integers(0, 500))
    chunk_size = draw(st.integers(1, 200))
    choices: list[Policy] = [Replication(3), ErasureCoded(6, 2), Hybrid(2, 1)]
    policy = draw(st.sampled_from(choices))
    chunks = tuple(
        ChunkEntry(n, tuple(draw(st.lists(blobs, max_size=2))), tuple(draw(st.lists(blobs))))
        for n in chunk_sizes(size, chunk_size)
    )
    return Manifest(
        bucket=draw(st.text(max_size=10)),
        name=draw(st.text(max_size=30)),
        version=draw(st.integers(1, 2**40)),
        content_id="00ff" * 8,
        size=size,
        chunk_size=chunk_size,
        policy=policy,
        wrapped_key=draw(st.binary(max_size=60)),
        created_at=draw(st.floats(0, 2e9)),
        chunks=chunks,
    )


@given(manifests())
def test_manifests_round_trip(manifest: Manifest) -> None:
    assert decode_manifest(encode_manifest(manifest)) == manifest


@given(manifests(), st.integers(0, 600), st.integers(0, 600))
def test_spans_cover_exactly_the_range(manifest: Manifest, a: int, b: int) -> None:
    start, end = min(a, b), min(max(a, b), manifest.size)
    spans = chunk_spans(manifest, start, end)
    assert sum(hi - lo for _, lo, hi in spans) == max(0, end - start)
    assert all(0 <= lo < hi <= manifest.chunks[i].length for i, lo, hi in spans)
    if spans:
        assert spans[0][0] * manifest.chunk_size + spans[0][1] == start


@given(manifests().filter(lambda m: any(c.blobs() for c in m.chunks)))
def test_a_repair_moves_one_blob(manifest: Manifest) -> None:
    index = next(i for i, c in enumerate(manifest.chunks) if c.blobs())
    old = manifest.chunks[index].blobs()[0]
    new = Blob("n9", "abcdef0123456789", b"\x01" * 32)
    moved = manifest.with_blob(index, old, new)
    assert new in moved.chunks[index].blobs()
    assert old not in moved.chunks[index].blobs()
    assert len(moved.blobs()) == len(manifest.blobs())


@pytest.mark.parametrize("data", [b"", b"\xa0", b"\x01", b"\xa1fformat\x02"])
def test_garbage_is_a_kvs_error(data: bytes) -> None:
    with pytest.raises(KvsError):
        decode_manifest(data)


@pytest.mark.parametrize(("size", "lengths"), [(10, []), (10, [5]), (0, []), (10, [4, 6])])
def test_chunks_must_add_up_to_the_size(size: int, lengths: list[int]) -> None:
    with pytest.raises(KvsError, match="add up"):
        Manifest(
            bucket="b",
            name="n",
            version=1,
            content_id="00",
            size=size,
            chunk_size=4,
            policy=Replication(1),
            wrapped_key=b"",
            created_at=0.0,
            chunks=tuple(ChunkEntry(n) for n in lengths),
        )
