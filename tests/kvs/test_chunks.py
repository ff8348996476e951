"""Cutting streams into chunks: every split of the input gives the object's chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.chunks import Chunk, pieces, prepare, rechunk, unseal
from meterseal.kvs.erasure import coder
from meterseal.kvs.policy import ErasureCoded, chunk_sizes
from meterseal.kvs.sealing import ObjectContext, seal_chunk


async def _stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _collect(parts: list[bytes], size: int) -> list[tuple[int, bool, bytes | memoryview]]:
    return [(i, f, c.join()) async for i, f, c in rechunk(_stream(parts), size)]


@given(st.lists(st.binary(max_size=50), max_size=8), st.integers(1, 20))
def test_any_split_gives_the_objects_chunks(parts: list[bytes], size: int) -> None:
    data = b"".join(parts)
    chunks = asyncio.run(_collect(parts, size))
    assert b"".join(c for _, _, c in chunks) == data
    assert [len(c) for _, _, c in chunks] == chunk_sizes(len(data), size)
    assert [i for i, _, _ in chunks] == list(range(len(chunks)))
    assert [f for _, f, _ in chunks] == [False] * (len(chunks) - 1) + [True]


@given(st.binary(max_size=100), st.integers(1, 30))
def test_pieces_cover_the_data(data: bytes, size: int) -> None:
    async def collect() -> list[memoryview]:
        return [p async for p in pieces(data, size)]

    got = asyncio.run(collect())
    assert b"".join(got) == data
    assert all(len(p) <= size for p in got)
    assert all(p.obj is data for p in got)  # views of the data, not copies


def test_a_chunk_is_joined_only_where_it_is_sealed() -> None:
    whole, first, second = b"abcd", b"ab", b"cdef"

    async def run() -> list[tuple[int, bool, Chunk]]:
        return [item async for item in rechunk(_stream([whole, first, second]), 4)]

    chunks = [c for _, _, c in asyncio.run(run())]
    joined = chunks[0].join()
    assert isinstance(joined, memoryview)
    assert joined.obj is whole  # a piece that is the whole chunk: not copied
    assert [bytes(p) for p in chunks[1].parts] == [b"ab", b"cd"]  # not joined yet
    assert chunks[1].join() == b"abcd"
    assert len(chunks[1]) == 4
    assert chunks[2].join() == b"ef"


def test_a_full_chunk_is_handed_out_as_soon_as_the_next_byte_arrives() -> None:
    received: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"cd", b"e", b"fgh", b"ij"):
            received.append(len(piece))
            yield piece

    async def run() -> list[tuple[int, bool, bytes | memoryview, int]]:
        return [(i, f, c.join(), sum(received)) async for i, f, c in rechunk(source(), 4)]

    # chunk 0 goes out on byte 5 (not once chunk 1 is complete): its sealing overlaps receiving
    assert asyncio.run(run()) == [
        (0, False, b"abcd", 5),
        (1, False, b"efgh", 10),
        (2, True, b"ij", 10),
    ]


@given(st.lists(st.binary(max_size=50), max_size=8), st.integers(1, 20))
def test_a_known_length_gives_the_same_chunks(parts: list[bytes], size: int) -> None:
    data = b"".join(parts)

    async def collect() -> list[tuple[int, bool, bytes]]:
        chunks = rechunk(_stream(parts), size, len(data))
        return [(i, f, bytes(c.join())) async for i, f, c in chunks]

    assert asyncio.run(collect()) == asyncio.run(_collect(parts, size))


def test_with_its_length_known_a_full_chunk_goes_out_before_the_next_byte() -> None:
    received: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for piece in (b"abcd", b"efgh", b"ij"):
            received.append(len(piece))
            yield piece

    async def run() -> list[tuple[int, bool, int]]:
        return [(i, f, sum(received)) async for i, f, _c in rechunk(source(), 4, 10)]

    assert asyncio.run(run()) == [(0, False, 4), (1, False, 8), (2, True, 10)]


@pytest.mark.parametrize(("parts", "declared"), [([b"abcd", b"e"], 4), ([b"abcd", b"e"], 6)])
def test_a_stream_of_another_length_than_declared_fails(parts: list[bytes], declared: int) -> None:
    async def run() -> list[bool]:
        return [f async for _i, f, _c in rechunk(_stream(parts), 4, declared)]

    with pytest.raises(KvsError, match="declared"):
        asyncio.run(run())


def test_a_chunk_sealed_into_a_reused_buffer_carries_nothing_of_the_chunk_before() -> None:
    # one thread, one sealing buffer: a large chunk of one object, then a small last chunk of
    # another; the small one's fragments are its own sealed bytes, no byte left over
    policy, key, other = ErasureCoded(3, 2), bytes(range(32)), bytes(range(1, 33))
    first = ObjectContext("meters", "large", 1, str(policy))
    second = ObjectContext("meters", "small", 1, str(policy))
    prepare(policy, 0, key, first, 0, False, Chunk((memoryview(b"L" * 4000),)))
    small = b"customer 17: 4.2 kWh"
    prepared = prepare(policy, 0, other, second, 7, True, Chunk((memoryview(small),)))
    assert prepared.datas == coder(3, 2).encode(seal_chunk(other, second, 7, True, small))
    found = dict(enumerate(prepared.datas[1:4], start=1))
    assert unseal(policy, found, other, second, 7, True) == small
