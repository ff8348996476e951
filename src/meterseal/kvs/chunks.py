"""Chunks of the secure KVS: cutting a stream into chunks, turning one into blobs (sans-IO).

`rechunk` cuts any stream of byte pieces into chunks of the object's chunk size (a full chunk
is held back only until the next byte arrives, so the last is known: its seal says so); a
`Chunk` is the pieces it arrived in, joined (each byte copied at most once) by `prepare` in the
worker thread that seals it, not on the event loop that receives the next one.
`prepare` seals a chunk and makes its blobs (full copies, then fragments) with their tags, in
one call a worker thread can run.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from meterseal.errors import KvsError
from meterseal.kvs.erasure import coder
from meterseal.kvs.policy import Hybrid, Policy, Replication
from meterseal.kvs.sealing import ObjectContext, blob_tag, open_chunk, seal_chunk


@dataclass(frozen=True)
class Chunk:
    """A chunk of an object as the pieces it arrived in."""

    parts: tuple[memoryview, ...]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def join(self) -> bytes:
        """The chunk's bytes (a piece that is the whole chunk is not copied)."""
        parts = self.parts
        if (
            len(parts) == 1
            and isinstance(parts[0].obj, bytes)
            and len(parts[0]) == len(parts[0].obj)
        ):
            return parts[0].obj
        return b"".join(parts)


async def rechunk(
    source: AsyncIterable[bytes], size: int
) -> AsyncIterator[tuple[int, bool, Chunk]]:
    """(index, final, chunk) of `size`-byte chunks of `source`; an empty source gives one."""
    parts: list[memoryview] = []
    have = 0
    pending: Chunk | None = None
    index = 0
    async for piece in source:
        view = memoryview(piece)
        while len(view):
            if pending is not None:  # more follows: the held chunk is not the last
                yield index, False, pending
                index += 1
                pending = None
            take = min(size - have, len(view))
            parts.append(view[:take])
            have += take
            view = view[take:]
            if have == size:
                pending = Chunk(tuple(parts))
                parts, have = [], 0
    yield index, True, pending if pending is not None else Chunk(tuple(parts))


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` as a stream of `size`-byte pieces."""
    for start in range(0, len(data), size):
        yield data[start : start + size] if len(data) > size else data


@dataclass(frozen=True)
class Prepared:
    """A sealed chunk as blobs: `copies` full copies first, then the fragments."""

    length: int  # plaintext bytes
    copies: int
    datas: list[bytes]
    tags: list[bytes]


def prepare(
    policy: Policy,
    copies: int,
    key: bytes,
    ctx: ObjectContext,
    index: int,
    final: bool,
    chunk: Chunk,
) -> Prepared:
    """Seal chunk `index` and make its blobs: `copies` copies (replication), fragments."""
    plain = chunk.join()
    sealed = seal_chunk(key, ctx, index, final, plain)
    if isinstance(policy, Replication):
        datas = [sealed] * copies
    else:
        copies = 1 if isinstance(policy, Hybrid) else 0
        datas = [sealed] * copies + coder(policy.k, policy.m).encode(sealed)
    tags = [blob_tag(key, index, position, data) for position, data in enumerate(datas)]
    return Prepared(len(plain), copies, datas, tags)


def decode(policy: Policy, found: bytes | dict[int, bytes]) -> bytes:
    """The sealed chunk from a copy (as is) or from k fragments by index."""
    if isinstance(found, bytes):
        return found
    if isinstance(policy, Replication):
        raise KvsError("a replicated chunk has no fragments")
    return coder(policy.k, policy.m).decode(found)


def unseal(
    policy: Policy,
    found: bytes | dict[int, bytes],
    key: bytes,
    ctx: ObjectContext,
    index: int,
    final: bool,
) -> bytes:
    """The plaintext of chunk `index` from a copy or k fragments (one call for a thread)."""
    return open_chunk(key, ctx, index, final, decode(policy, found))
