"""Sealing: chunks open only as the chunk they were sealed as; keys and manifests likewise."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.sealing import (
    BucketKeys,
    ObjectContext,
    blob_intact,
    blob_tag,
    derive_bucket_key,
    new_object_key,
    open_chunk,
    open_manifest,
    seal_chunk,
    seal_chunk_into,
    seal_manifest,
    unwrap_key,
    wrap_key,
)

MASTER = bytes(range(32))
KEYS = BucketKeys.derive("meters", derive_bucket_key(MASTER, "meters"))
CTX = ObjectContext("meters", "2026/01/customer-17", 3, "ec:6+2")


def _seal_all(key: bytes, ctx: ObjectContext, chunks: list[bytes]) -> list[bytes]:
    last = len(chunks) - 1
    return [seal_chunk(key, ctx, i, i == last, c) for i, c in enumerate(chunks)]


def _open_all(key: bytes, ctx: ObjectContext, sealed: list[bytes]) -> list[bytes]:
    last = len(sealed) - 1
    return [open_chunk(key, ctx, i, i == last, s) for i, s in enumerate(sealed)]


chunk_lists = st.lists(st.binary(max_size=64), min_size=1, max_size=6)


@given(chunk_lists)
def test_chunks_round_trip(chunks: list[bytes]) -> None:
    key = new_object_key(os.urandom)
    sealed = _seal_all(key, CTX, chunks)
    assert [len(s) for s in sealed] == [len(c) + 16 for c in chunks]
    assert _open_all(key, CTX, sealed) == chunks


@given(chunk_lists.filter(lambda c: len(c) >= 2), st.randoms(use_true_random=False))
def test_reordered_or_truncated_chunks_are_refused(chunks: list[bytes], rnd: random.Random) -> None:
    key = new_object_key(os.urandom)
    sealed = _seal_all(key, CTX, chunks)
    i, j = rnd.sample(range(len(sealed)), 2)
    swapped = list(sealed)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    with pytest.raises(KvsError, match="fails authentication"):
        _open_all(key, CTX, swapped)
    with pytest.raises(KvsError):  # dropping the last chunk: the new last was not final
        _open_all(key, CTX, sealed[:-1])


@given(st.binary(max_size=64), st.integers(0, 40), st.integers(0, 7))
def test_a_flipped_bit_is_refused(plain: bytes, position: int, bit: int) -> None:
    key = new_object_key(os.urandom)
    sealed = bytearray(seal_chunk(key, CTX, 0, True, plain))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(KvsError):
        open_chunk(key, CTX, 0, True, bytes(sealed))


@pytest.mark.parametrize(
    "other",
    [
        ObjectContext("other-bucket", CTX.name, CTX.version, CTX.policy),
        ObjectContext(CTX.bucket, "2026/01/customer-18", CTX.version, CTX.policy),
        ObjectContext(CTX.bucket, CTX.name, CTX.version + 1, CTX.policy),
        ObjectContext(CTX.bucket, CTX.name, CTX.version, "rep:3"),
    ],
)
def test_a_chunk_moved_to_another_object_version_or_policy_is_refused(
    other: ObjectContext,
) -> None:
    key = new_object_key(os.urandom)
    sealed = seal_chunk(key, CTX, 0, True, b"reading")
    with pytest.raises(KvsError, match="fails authentication"):
        open_chunk(key, other, 0, True, sealed)
    with pytest.raises(KvsError):
        open_chunk(key, CTX, 1, True, sealed)
    with pytest.raises(KvsError):
        open_chunk(key, CTX, 0, False, sealed)
    with pytest.raises(KvsError):
        open_chunk(new_object_key(os.urandom), CTX, 0, True, sealed)


def test_object_keys_unwrap_only_for_their_object_version() -> None:
    key = new_object_key(os.urandom)
    wrapped = wrap_key(KEYS, CTX, key, os.urandom)
    assert unwrap_key(KEYS, CTX, wrapped) == key
    assert key not in wrapped
    moved = ObjectContext(CTX.bucket, CTX.name, CTX.version + 1, CTX.policy)
    with pytest.raises(KvsError):
        unwrap_key(KEYS, moved, wrapped)
    other_bucket = BucketKeys.derive("meters", derive_bucket_key(MASTER, "other"))
    with pytest.raises(KvsError):
        unwrap_key(other_bucket, CTX, wrapped)


def test_manifests_open_only_for_their_entry() -> None:
    entry = KEYS.catalog_key("a")
    sealed = seal_manifest(KEYS, entry, b"encoded manifest", os.urandom)
    assert open_manifest(KEYS, entry, sealed) == b"encoded manifest"
    with pytest.raises(KvsError):
        open_manifest(KEYS, KEYS.catalog_key("b"), sealed)
    with pytest.raises(KvsError):
        open_manifest(KEYS, entry, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_names_and_buckets_are_hidden_and_keys_differ_per_bucket() -> None:
    other = BucketKeys.derive("other", derive_bucket_key(MASTER, "other"))
    assert KEYS.catalog_key("a") != other.catalog_key("a")
    assert KEYS.bucket_id != other.bucket_id
    assert "meters" not in KEYS.bucket_id
    assert len({KEYS.wrap, KEYS.manifest, KEYS.names}) == 3
    assert "secret" in repr(KEYS)
    assert KEYS.wrap.hex() not in repr(KEYS)
    with pytest.raises(KvsError):
        derive_bucket_key(b"short", "meters")
    with pytest.raises(KvsError):
        new_object_key(lambda n: b"\x00" * (n - 1))


@given(st.binary(max_size=200), st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1))
def test_blob_tags_hold_only_for_their_bytes_chunk_and_position(
    data: bytes, index: int, position: int
) -> None:
    key = new_object_key(os.urandom)
    tag = blob_tag(key, index, position, data)
    assert len(tag) == 16
    assert blob_intact(key, index, position, data, tag)
    assert not blob_intact(key, index, position, data + b"\x00", tag)
    assert not blob_intact(key, index ^ 1, position, data, tag)
    assert not blob_intact(key, index, position ^ 1, data, tag)
    assert not blob_intact(new_object_key(os.urandom), index, position, data, tag)
    with pytest.raises(KvsError):
        blob_tag(key, 2**32, 0, data)


@given(st.binary(max_size=3000), st.integers(0, 40))
def test_a_chunk_sealed_into_a_buffer_is_the_chunk_sealed(plain: bytes, spare: int) -> None:
    key = bytes(range(32))
    buffer = memoryview(bytearray(len(plain) + 16 + spare))
    sealed = seal_chunk_into(key, CTX, 2, False, plain, buffer)
    assert bytes(sealed) == seal_chunk(key, CTX, 2, False, plain)
    assert open_chunk(key, CTX, 2, False, sealed) == plain
