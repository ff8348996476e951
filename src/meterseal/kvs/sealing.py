"""Sealing of the secure KVS: per-object keys, sealed chunks, wrapped keys, sealed manifests.

Every version of an object has its own random 256-bit key. Chunk i is AES-256-GCM with the
nonce i (unique under that key) and associated data binding bucket, name, version, policy,
index and whether it is the last chunk, so chunks cannot be reordered, dropped from the end,
or moved between objects or versions. The object key is wrapped under the bucket's wrap key
(AD: bucket, name, version); manifests are sealed under the bucket's manifest key (AD: bucket,
catalog key); catalog keys are HMACs of names. The three bucket subkeys come from one bucket
key by HKDF, and bucket keys from the master secret by HKDF per bucket. Sans-IO: randomness is
a parameter (`Random`, e.g. `os.urandom`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meterseal.errors import KvsError

Random = Callable[[int], bytes]  # n random bytes (os.urandom, or a seeded one in tests)

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_CHUNKS = 2**32  # chunk indices are nonces: far below GCM's 2^96


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def derive_bucket_key(master_secret: bytes, bucket: str) -> bytes:
    """The bucket's key from the store's master secret (HKDF-SHA256, one per bucket name)."""
    if len(master_secret) < KEY_BYTES:
        raise KvsError(f"the KVS master secret needs {KEY_BYTES} bytes, not {len(master_secret)}")
    return _hkdf(master_secret, b"meterseal kvs bucket key/1 " + bucket.encode())


@dataclass(frozen=True)
class BucketKeys:
    """The subkeys of one bucket: wrap object keys, seal manifests, hide names."""

    bucket: str
    wrap: bytes
    manifest: bytes
    names: bytes

    @classmethod
    def derive(cls, bucket: str, bucket_key: bytes) -> BucketKeys:
        """The subkeys of `bucket` from its 32-byte key (HKDF, one label each)."""
        if len(bucket_key) != KEY_BYTES:
            raise KvsError(f"a bucket key has {KEY_BYTES} bytes, not {len(bucket_key)}")
        return cls(
            bucket=bucket,
            wrap=_hkdf(bucket_key, b"meterseal kvs wrap/1"),
            manifest=_hkdf(bucket_key, b"meterseal kvs manifest/1"),
            names=_hkdf(bucket_key, b"meterseal kvs names/1"),
        )

    def __repr__(self) -> str:
        return f"BucketKeys({self.bucket!r}, <secret>)"

    @property
    def bucket_id(self) -> str:
        """The bucket's id in the catalog (storage sees this, never the bucket's name)."""
        return hmac.new(self.names, b"\x00bucket", hashlib.sha256).hexdigest()[:32]

    def catalog_key(self, name: str) -> str:
        """The catalog key of object `name` (HMAC-SHA256 hex: storage never sees the name)."""
        return hmac.new(self.names, b"\x01" + name.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ObjectContext:
    """What a version of an object is, bound into every chunk's associated data."""

    bucket: str
    name: str
    version: int
    policy: str

    def chunk_ad(self, index: int, final: bool) -> bytes:
        """The associated data of chunk `index` (`final` on the object's last chunk)."""
        fields = [self.bucket, self.name, self.version, self.policy, index, final]
        return b"meterseal kvs chunk/1" + cbor2.dumps(fields)

    def key_ad(self) -> bytes:
        """The associated data of the wrapped object key (the policy may change, not this)."""
        return b"meterseal kvs object key/1" + cbor2.dumps([self.bucket, self.name, self.version])


def new_object_key(rng: Random) -> bytes:
    """A fresh 256-bit object key (one per object version: chunk nonces restart at 0)."""
    key = rng(KEY_BYTES)
    if len(key) != KEY_BYTES:
        raise KvsError("the random source returned a short key")
    return key


def _nonce(index: int) -> bytes:
    if not 0 <= index < MAX_CHUNKS:
        raise KvsError(f"chunk index {index} out of range")
    return index.to_bytes(NONCE_BYTES, "big")


def seal_chunk(
    key: bytes, ctx: ObjectContext, index: int, final: bool, plain: bytes | memoryview
) -> bytes:
    """Chunk `index` of the object sealed: ciphertext and tag (len(plain) + 16 bytes)."""
    return AESGCM(key).encrypt(_nonce(index), plain, ctx.chunk_ad(index, final))


def seal_chunk_into(
    key: bytes,
    ctx: ObjectContext,
    index: int,
    final: bool,
    plain: bytes | memoryview,
    out: memoryview,
) -> memoryview:
    """`seal_chunk` written into `out` (len(plain) + 16 bytes of it used): a view of them."""
    sealed = out[: len(plain) + TAG_BYTES]
    AESGCM(key).encrypt_into(_nonce(index), plain, ctx.chunk_ad(index, final), sealed)
    return sealed


def open_chunk(
    key: bytes, ctx: ObjectContext, index: int, final: bool, sealed: bytes | memoryview
) -> bytes:
    """The plaintext of a sealed chunk; KvsError when it is not chunk `index` of this object."""
    try:
        return AESGCM(key).decrypt(_nonce(index), sealed, ctx.chunk_ad(index, final))
    except InvalidTag:
        raise KvsError(
            f"chunk {index} of {ctx.bucket}/{ctx.name} v{ctx.version} fails authentication"
        ) from None


def _blob_nonce(index: int, position: int) -> bytes:
    if not (0 <= index < MAX_CHUNKS and 0 <= position < 2**16):
        raise KvsError(f"blob {position} of chunk {index} out of range")
    return ((1 << 95) | (index << 16) | position).to_bytes(NONCE_BYTES, "big")


def blob_tag(key: bytes, index: int, position: int, data: bytes) -> bytes:
    """The 16-byte GMAC of blob `position` of chunk `index` under the object key.

    Storage cannot forge it (it never has the key); its nonces (top bit set) never meet the
    chunks' (indices below 2^32). It locates a bad copy or fragment: the chunk's own seal is
    what proves the bytes are the object's.
    """
    return AESGCM(key).encrypt(_blob_nonce(index, position), b"", data)


def blob_intact(key: bytes, index: int, position: int, data: bytes, tag: bytes) -> bool:
    """Whether `data` is blob `position` of chunk `index` as written."""
    return hmac.compare_digest(blob_tag(key, index, position, data), tag)


def wrap_key(keys: BucketKeys, ctx: ObjectContext, object_key: bytes, rng: Random) -> bytes:
    """The object key sealed under the bucket's wrap key: random nonce + ciphertext + tag."""
    nonce = rng(NONCE_BYTES)
    return nonce + AESGCM(keys.wrap).encrypt(nonce, object_key, ctx.key_ad())


def unwrap_key(keys: BucketKeys, ctx: ObjectContext, wrapped: bytes) -> bytes:
    """The object key; KvsError when `wrapped` is not this object version's key."""
    try:
        return AESGCM(keys.wrap).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], ctx.key_ad())
    except InvalidTag:
        raise KvsError(f"the key of {ctx.bucket}/{ctx.name} v{ctx.version} fails") from None


def _manifest_ad(keys: BucketKeys, catalog_key: str) -> bytes:
    return b"meterseal kvs manifest/1" + cbor2.dumps([keys.bucket, catalog_key])


def seal_manifest(keys: BucketKeys, catalog_key: str, encoded: bytes, rng: Random) -> bytes:
    """An encoded manifest sealed for the catalog entry `catalog_key` of the bucket."""
    nonce = rng(NONCE_BYTES)
    return nonce + AESGCM(keys.manifest).encrypt(nonce, encoded, _manifest_ad(keys, catalog_key))


def open_manifest(keys: BucketKeys, catalog_key: str, sealed: bytes) -> bytes:
    """The encoded manifest; KvsError when it was not sealed for this bucket and entry."""
    try:
        return AESGCM(keys.manifest).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _manifest_ad(keys, catalog_key)
        )
    except InvalidTag:
        raise KvsError(f"a manifest of bucket {keys.bucket} fails authentication") from None
