"""Chunks of the secure KVS: cutting a stream into chunks, turning one into blobs (sans-IO).

`rechunk` cuts any stream of byte pieces into chunks of the object's chunk size (a full chunk
is held back until the next byte arrives, so the last is known: its seal says so; given the
object's length, none is held back, and a stream of another length fails); a `Chunk` is the
pieces it arrived in, joined (each byte copied at most once, a chunk that came as one piece
not at all) by `prepare` in the worker thread that seals it, not on the event loop that
receives the next one.
`prepare` seals a chunk and makes its blobs (full copies, then fragments) with their tags, in
one call a worker thread can run. A chunk that is only erasure coded is sealed into its thread's
own buffer, reused chunk after chunk (its fragments are copies): no new 4 MiB object to allocate
and zero per chunk.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import TypeAlias

from meterseal.errors import KvsError
from meterseal.kvs.erasure import coder
from meterseal.kvs.policy import Hybrid, Policy, Replication
from meterseal.kvs.sealing import (
    TAG_BYTES,
    ObjectContext,
    blob_tag,
    open_chunk,
    seal_chunk,
    seal_chunk_into,
)

Piece: TypeAlias = bytes | bytearray | memoryview  # a piece of a stream (read only)

_threads = threading.local()  # .sealed: the thread's buffer for chunks sealed only to be coded


def _sealing_buffer(size: int) -> memoryview:
    """This thread's buffer for a sealed chunk of `size` bytes (grown to the largest asked)."""
    buffer: bytearray | None = getattr(_threads, "sealed", None)
    if buffer is None or len(buffer) < size:
        buffer = _threads.sealed = bytearray(size)
    return memoryview(buffer)


@dataclass(frozen=True)
class Chunk:
    """A chunk of an object as the pieces it arrived in."""

    parts: tuple[memoryview, ...]

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def join(self) -> bytes | memoryview:
        """The chunk's bytes (a piece that is the whole chunk is not copied)."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


async def rechunk(
    source: AsyncIterable[Piece], size: int, total: int | None = None
) -> AsyncIterator[tuple[int, bool, Chunk]]:
    """(index, final, chunk) of `size`-byte chunks of `source`; an empty source gives one.

    Given `total`, the source's length, each chunk goes out once complete (the last is known
    by its end) and KvsError ends a source of another length: longer as soon as it is.
    """
    parts: list[memoryview] = []
    have = seen = 0
    pending: Chunk | None = None
    index = 0
    async for piece in source:
        view = memoryview(piece).cast("B")
        seen += len(view)
        if total is not None and seen > total:
            raise KvsError(f"the object is longer than its declared {total} bytes")
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
                if total is not None and seen - len(view) < total:  # not the last: out now
                    yield index, False, pending
                    index += 1
                    pending = None
    if total is not None and seen != total:
        raise KvsError(f"the object has {seen} bytes, not its declared {total}")
    yield index, True, pending if pending is not None else Chunk(tuple(parts))


async def pieces(data: Piece, size: int) -> AsyncIterator[memoryview]:
    """`data` as a stream of `size`-byte pieces (views of it: not copied)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), size):
        yield view[start : start + size]


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
    if isinstance(policy, Replication):
        datas = [seal_chunk(key, ctx, index, final, plain)] * copies
    elif isinstance(policy, Hybrid):
        sealed = seal_chunk(key, ctx, index, final, plain)  # kept: the copy is stored as is
        copies, datas = 1, [sealed, *coder(policy.k, policy.m).encode(sealed)]
    else:
        buffer = _sealing_buffer(len(plain) + TAG_BYTES)
        view = seal_chunk_into(key, ctx, index, final, plain, buffer)
        copies, datas = 0, coder(policy.k, policy.m).encode(view)
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
    if isinstance(found, bytes):
        return open_chunk(key, ctx, index, final, found)
    if isinstance(policy, Replication):
        raise KvsError("a replicated chunk has no fragments")
    # opened straight from the decoder's buffer: the sealed chunk is not copied out first
    return coder(policy.k, policy.m).decode_then(
        found, lambda sealed: open_chunk(key, ctx, index, final, sealed)
    )
