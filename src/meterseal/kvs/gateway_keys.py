"""API keys of the KVS gateway: each scoped to one bucket, a key prefix and its rights (sans-IO).

A key is `kvk_<id>_<secret>`: the 64-bit id is public (it names the key in lists and logs),
only the SHA-256 of the 256-bit secret is kept, and the whole key is shown once. Its scope is
one bucket (or `*`, every bucket), a key prefix ('' for the whole bucket) and rights:
`read` (GET, HEAD, list), `write` (PUT, DELETE, an object's policy) and `admin` (the bucket's
default policy, scrub). Nothing is allowed that the scope does not name (fail closed).

The table of keys is kept by the gateway as a reserved object of the store itself
(`KeyTable.to_bytes`), so it is encrypted and authenticated under a key from the CAS like
every object, and every gateway of a cluster sees the same table.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import cbor2

from meterseal.errors import ConfigurationError, MetersealError

KEY_PREFIX = "kvk_"
EVERY_BUCKET = "*"
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
MAX_KEY_BYTES = 1024  # of an object's name, UTF-8
LABEL_PATTERN = re.compile(r"[\w .@:/-]{0,64}")
_TABLE_FORMAT = "meterseal-kvs-keys/1"


class KvsKeyError(MetersealError):
    """An API key of the KVS cannot be made, changed or read as asked."""


class Right(enum.StrEnum):
    """What a key may do within its scope."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


def parse_rights(text: str) -> frozenset[Right]:
    """Rights from 'read,write' (or 'rw', 'r', 'w', 'admin'); ConfigurationError if unknown."""
    short = {"r": (Right.READ,), "w": (Right.WRITE,), "rw": (Right.READ, Right.WRITE)}
    rights: set[Right] = set()
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        try:
            rights.update(short.get(part) or (Right(part),))
        except ValueError:
            raise ConfigurationError(
                f"unknown right {part!r}: give read, write, admin (comma-separated) or rw"
            ) from None
    if not rights:
        raise ConfigurationError("a key needs at least one right: read, write or admin")
    return frozenset(rights)


def check_bucket(bucket: str) -> str:
    """`bucket` if it is a bucket name (1-63 of a-z, 0-9, '.', '-'; starts alphanumeric)."""
    if not BUCKET_PATTERN.fullmatch(bucket):
        raise KvsKeyError(
            f"bucket name {bucket[:80]!r}: 1-63 of a-z, 0-9, '.' and '-', starting with a "
            "letter or digit"
        )
    return bucket


def check_object_key(key: str) -> str:
    """`key` if it names an object: 1 to 1024 bytes of UTF-8, no control characters."""
    if not key or len(key.encode()) > MAX_KEY_BYTES or any(ord(c) < 32 for c in key):
        raise KvsKeyError(f"object key: 1-{MAX_KEY_BYTES} bytes of UTF-8, no control characters")
    return key


@dataclass(frozen=True)
class Scope:
    """One bucket (or every bucket), a key prefix, rights."""

    bucket: str
    prefix: str
    rights: frozenset[Right]

    def __post_init__(self) -> None:
        if self.bucket != EVERY_BUCKET:
            check_bucket(self.bucket)
        if len(self.prefix.encode()) > MAX_KEY_BYTES:
            raise KvsKeyError(f"a key prefix has at most {MAX_KEY_BYTES} bytes")
        if not self.rights:
            raise KvsKeyError("a scope names at least one right")

    def covers(self, bucket: str) -> bool:
        """Whether the scope's bucket is `bucket` (or every bucket)."""
        return self.bucket in (EVERY_BUCKET, bucket)

    def allows(self, right: Right, bucket: str, key: str) -> bool:
        """Whether `right` on object `key` of `bucket` is within the scope."""
        return right in self.rights and self.covers(bucket) and key.startswith(self.prefix)

    def listing_prefix(self, bucket: str, prefix: str) -> str | None:
        """The prefix a list of `bucket` under `prefix` runs with; None if the scope sees none.

        A shorter prefix than the scope's is narrowed to the scope's: the list holds exactly
        the keys the caller may read, in key order.
        """
        if Right.READ not in self.rights or not self.covers(bucket):
            return None
        if prefix.startswith(self.prefix):
            return prefix
        return self.prefix if self.prefix.startswith(prefix) else None

    def __str__(self) -> str:
        rights = ",".join(sorted(self.rights))
        return f"{self.bucket}/{self.prefix}* {rights}"


@dataclass(frozen=True)
class KvsKey:
    """One key of the table: id, digest of its secret, scope, label, when made and revoked."""

    key_id: str
    digest: bytes = field(repr=False)
    scope: Scope
    label: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the key still opens anything."""
        return self.revoked_at is None


@dataclass(frozen=True)
class NewKey:
    """A key just made: `secret` (the whole key) is shown once and never stored."""

    key: KvsKey
    secret: str = field(repr=False)


def _digest(secret: str) -> bytes:
    # A 256-bit random secret needs no slow hash: nobody can guess it, only steal the table.
    return hashlib.sha256(secret.encode()).digest()


def split_key(presented: str) -> tuple[str, bytes] | None:
    """(key id, digest of the secret) of a presented key; None if it is not shaped like one."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, underscore, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not underscore or not re.fullmatch(r"[0-9a-f]{16}", key_id) or not 20 <= len(secret) <= 64:
        return None
    return key_id, _digest(secret)


@dataclass(frozen=True)
class KeyTable:
    """Every key of the gateway, by id (immutable: changes return a new table)."""

    keys: dict[str, KvsKey] = field(default_factory=dict)

    def add(
        self, scope: Scope, label: str, now: float, token: Callable[[int], bytes]
    ) -> tuple[KeyTable, NewKey]:
        """A new key of `scope`; `token(n)` gives n random bytes (injected)."""
        if not LABEL_PATTERN.fullmatch(label):
            raise KvsKeyError("a label is at most 64 letters, digits, spaces and .@:/-_")
        key_id = token(8).hex()
        while key_id in self.keys:
            key_id = token(8).hex()
        secret = token(32).hex()
        key = KvsKey(key_id, _digest(secret), scope, label, now)
        return KeyTable({**self.keys, key_id: key}), NewKey(key, f"{KEY_PREFIX}{key_id}_{secret}")

    def revoke(self, key_id: str, now: float) -> KeyTable:
        """The table with `key_id` revoked (KvsKeyError if there is no such key)."""
        key = self.keys.get(key_id)
        if key is None:
            raise KvsKeyError(f"no KVS key {key_id!r} (see `meterseal kvs keys list`)")
        if not key.active:
            return self
        return KeyTable({**self.keys, key_id: replace(key, revoked_at=now)})

    def verify(self, presented: str) -> KvsKey | None:
        """The active key `presented` proves; None for anything else (constant-time compare)."""
        split = split_key(presented)
        if split is None:
            return None
        key = self.keys.get(split[0])
        if key is None or not hmac.compare_digest(key.digest, split[1]) or not key.active:
            return None
        return key

    def listing(self) -> list[KvsKey]:
        """The keys, oldest first."""
        return sorted(self.keys.values(), key=lambda k: (k.created_at, k.key_id))

    def to_bytes(self) -> bytes:
        """The table as canonical CBOR (what the gateway stores, sealed, in the store)."""
        rows = [_row(key) for key in self.listing()]
        return bytes(cbor2.dumps({"format": _TABLE_FORMAT, "keys": rows}, canonical=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyTable:
        """Parse `to_bytes`; KvsKeyError if it is not a key table."""
        try:
            body = cbor2.loads(data)
            if body.get("format") != _TABLE_FORMAT:
                raise ValueError("not a key table")
            keys = [_key(row) for row in body["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError, cbor2.CBORDecodeError) as exc:
            raise KvsKeyError(f"the KVS key table is unreadable: {exc}") from None
        return cls({key.key_id: key for key in keys})


def _row(key: KvsKey) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "digest": key.digest,
        "bucket": key.scope.bucket,
        "prefix": key.scope.prefix,
        "rights": sorted(key.scope.rights),
        "label": key.label,
        "created": key.created_at,
        "revoked": key.revoked_at,
    }


def _key(row: dict[str, Any]) -> KvsKey:
    rights: Iterable[str] = row["rights"]
    scope = Scope(row["bucket"], row["prefix"], frozenset(Right(r) for r in rights))
    revoked = row["revoked"]
    return KvsKey(
        str(row["id"]),
        bytes(row["digest"]),
        scope,
        str(row["label"]),
        float(row["created"]),
        None if revoked is None else float(revoked),
    )
