"""Manifests of the secure KVS: where every blob of an object version is, in CBOR (sans-IO).

A manifest names the object (bucket, name), its version (each write and each policy change
adds one), its `content_id` (the same across policy changes of one write: a reader may switch
to a re-encoded version, never to other content), size, chunk size, policy, the wrapped object
key, its creation time and, per chunk, the plaintext length, full copies
[(node, blob id, tag)] and fragments (fragment index = position); a blob's tag is its GMAC
under the object key (sealing.blob_tag) at its position (copies first, then fragments). The
gateway seals the encoded manifest (sealing.seal_manifest) before the catalog stores it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cbor2

from meterseal.errors import KvsError
from meterseal.kvs.policy import Policy, chunk_sizes, parse_policy
from meterseal.kvs.sealing import ObjectContext

FORMAT = 1


@dataclass(frozen=True)
class Blob:
    """One stored blob: the node holding it, its id, the tag of its bytes (sealing.blob_tag)."""

    node: str
    blob_id: str
    tag: bytes


@dataclass(frozen=True)
class ChunkEntry:
    """Where chunk i lives: plaintext length, full copies, fragments by index."""

    length: int
    replicas: tuple[Blob, ...] = ()
    fragments: tuple[Blob, ...] = ()

    def blobs(self) -> tuple[Blob, ...]:
        """Every blob of the chunk."""
        return self.replicas + self.fragments


@dataclass(frozen=True)
class Manifest:
    """One version of one object."""

    bucket: str
    name: str
    version: int
    content_id: str
    size: int
    chunk_size: int
    policy: Policy
    wrapped_key: bytes
    created_at: float
    chunks: tuple[ChunkEntry, ...]

    def __post_init__(self) -> None:
        lengths = [c.length for c in self.chunks]
        if lengths != chunk_sizes(self.size, self.chunk_size):
            raise KvsError(f"manifest of {self.name!r}: chunk lengths do not add up to its size")

    @property
    def context(self) -> ObjectContext:
        """What every chunk's associated data binds."""
        return ObjectContext(self.bucket, self.name, self.version, str(self.policy))

    def blobs(self) -> list[Blob]:
        """Every blob of this version."""
        return [blob for chunk in self.chunks for blob in chunk.blobs()]

    def with_blob(self, chunk: int, old: Blob, new: Blob) -> Manifest:
        """This manifest with blob `old` of chunk `chunk` moved to `new` (after a repair)."""
        entry = self.chunks[chunk]
        swapped = replace(
            entry,
            replicas=tuple(new if b == old else b for b in entry.replicas),
            fragments=tuple(new if b == old else b for b in entry.fragments),
        )
        return replace(self, chunks=(*self.chunks[:chunk], swapped, *self.chunks[chunk + 1 :]))


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` and `list` tell of an object."""

    bucket: str
    name: str
    size: int
    version: int
    policy: Policy
    created_at: float
    content_id: str

    @classmethod
    def of(cls, m: Manifest) -> ObjectInfo:
        """The info of a manifest."""
        return cls(m.bucket, m.name, m.size, m.version, m.policy, m.created_at, m.content_id)


@dataclass(frozen=True)
class ListPage:
    """One page of a listing in name order; `next_after` continues it (None: no more)."""

    objects: list[ObjectInfo]
    next_after: str | None


def chunk_spans(manifest: Manifest, start: int, end: int) -> list[tuple[int, int, int]]:
    """(chunk index, first byte, byte after the last) within each chunk of bytes [start, end)."""
    spans = []
    offset = 0
    for index, chunk in enumerate(manifest.chunks):
        lo, hi = max(start, offset), min(end, offset + chunk.length)
        if lo < hi:
            spans.append((index, lo - offset, hi - offset))
        offset += chunk.length
    return spans


def _blob(blob: Blob) -> list[Any]:
    return [blob.node, blob.blob_id, blob.tag]


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest in CBOR."""
    return bytes(
        cbor2.dumps(
            {
                "format": FORMAT,
                "bucket": manifest.bucket,
                "name": manifest.name,
                "version": manifest.version,
                "content_id": manifest.content_id,
                "size": manifest.size,
                "chunk_size": manifest.chunk_size,
                "policy": str(manifest.policy),
                "wrapped_key": manifest.wrapped_key,
                "created_at": manifest.created_at,
                "chunks": [
                    [c.length, [_blob(b) for b in c.replicas], [_blob(b) for b in c.fragments]]
                    for c in manifest.chunks
                ],
            }
        )
    )


def _parse_blob(item: Any) -> Blob:
    node, blob_id, tag = item
    if not (isinstance(node, str) and isinstance(blob_id, str) and isinstance(tag, bytes)):
        raise TypeError("blob entry")
    return Blob(node, blob_id, tag)


def decode_manifest(data: bytes) -> Manifest:
    """A manifest from CBOR; KvsError when it is not one."""
    try:
        fields = cbor2.loads(data)
        if fields.pop("format") != FORMAT:
            raise KvsError("unknown manifest format")
        chunks = tuple(
            ChunkEntry(
                int(length),
                tuple(_parse_blob(b) for b in replicas),
                tuple(_parse_blob(b) for b in fragments),
            )
            for length, replicas, fragments in fields.pop("chunks")
        )
        return Manifest(chunks=chunks, policy=parse_policy(fields.pop("policy")), **fields)
    except KvsError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, cbor2.CBORDecodeError) as error:
        raise KvsError(f"malformed manifest: {error}") from error
