"""Freshness of the KVS catalog: refusing a manifest older than one already seen (sans-IO).

The catalog is kept by the storage nodes, which cannot forge a sealed manifest but could serve
an older one they kept (with its blobs): an object would go back to an old version, the key
table to one where a revoked key still works. Every manifest carries its version (each write
and each policy change adds one) and its write's time (`created_at`, kept across policy
changes). `VersionMarks` holds, per catalog entry, the highest version and time seen, and
refuses a manifest older in both (`RolledBack`): a newer write has a higher version, and a
write after a delete (versions start again) has a later time. A delete leaves a mark one
version above the deleted one, so a deleted entry served again is refused too, and this
store's next write of the name goes on from there.

`GatewayMarks` is the gateway's own state that outlives it (the versions of its key table and
bucket registry), sealed under a key from the master secret (kvs/gateway_state.py keeps it in
a file beside the nodes' configuration). docs/kvs.md says what this leaves to an attacker.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meterseal.errors import KvsError
from meterseal.kvs.sealing import NONCE_BYTES, Random

_MARKS_AD = b"meterseal kvs gateway marks/1"


class RolledBack(KvsError):
    """The storage nodes served an older version than one already seen: refused."""


@dataclass(frozen=True)
class Mark:
    """The newest version and write time seen of one catalog entry, and since when its
    current line of versions runs (the time of a write after a delete: versions start again)."""

    version: int
    created_at: float
    since: float = 0.0


class VersionMarks:
    """Per catalog entry (bucket id, catalog key): the newest version seen, in memory."""

    def __init__(self) -> None:
        self._marks: dict[tuple[str, str], Mark] = {}

    def __len__(self) -> int:
        return len(self._marks)

    def check(self, entry: tuple[str, str], version: int, created_at: float, what: str) -> None:
        """Note a manifest read or written; RolledBack when it is older than the mark: older
        in version and time, or written before the current line of versions began."""
        mark = self._marks.get(entry)
        if mark is None:
            self._marks[entry] = Mark(version, created_at)
            return
        if created_at < mark.since or (version < mark.version and created_at <= mark.created_at):
            raise RolledBack(
                f"the storage nodes served version {version} of {what}, older than version "
                f"{mark.version} already seen: a rolled-back catalog entry, refused"
            )
        if version < mark.version:  # written later: a write after a delete, versions anew
            self._marks[entry] = Mark(version, created_at, since=created_at)
        else:
            self._marks[entry] = Mark(version, max(created_at, mark.created_at), mark.since)

    def deleted(self, entry: tuple[str, str], version: int, now: float) -> None:
        """Note that `version` was deleted at `now`: serving it again is a rollback."""
        mark = self._marks.get(entry, Mark(0, now))
        self._marks[entry] = Mark(
            max(version + 1, mark.version), max(now, mark.created_at), mark.since
        )

    def next_version(self, entry: tuple[str, str], current: int | None) -> int:
        """The version a new write gets: after the current one and after every one seen."""
        mark = self._marks.get(entry)
        after = 0 if current is None else current
        return max(after + 1, 0 if mark is None else mark.version)


@dataclass(frozen=True)
class GatewayMarks:
    """The highest versions of the gateway's own objects (by name) this deployment saved."""

    versions: dict[str, int]

    def at_least(self, name: str) -> int:
        """The lowest version of `name` the gateway may accept (0: any)."""
        return self.versions.get(name, 0)

    def raised(self, name: str, version: int) -> GatewayMarks:
        """These marks with `name` at `version` at least."""
        return GatewayMarks({**self.versions, name: max(version, self.at_least(name))})

    def merged(self, other: GatewayMarks) -> GatewayMarks:
        """The higher of both marks, name by name (two writers never lower one)."""
        names = set(self.versions) | set(other.versions)
        return GatewayMarks({n: max(self.at_least(n), other.at_least(n)) for n in names})

    def seal(self, key: bytes, rng: Random) -> bytes:
        """The marks sealed under `key` (AES-256-GCM, random nonce)."""
        nonce = rng(NONCE_BYTES)
        data = cbor2.dumps(self.versions, canonical=True)
        return nonce + AESGCM(key).encrypt(nonce, data, _MARKS_AD)

    @classmethod
    def open(cls, key: bytes, sealed: bytes) -> GatewayMarks:
        """Marks from their sealed bytes; KvsError when they are not this gateway's."""
        try:
            data = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _MARKS_AD)
            versions = cbor2.loads(data)
            if not isinstance(versions, dict) or not all(
                isinstance(n, str) and isinstance(v, int) for n, v in versions.items()
            ):
                raise ValueError("not a map of names to versions")
        except (InvalidTag, ValueError, cbor2.CBORDecodeError) as exc:
            raise KvsError(f"the gateway's version marks do not open: {exc or 'forged'}") from None
        return cls(dict(versions))


def marks_key(manifest_key: bytes) -> bytes:
    """The key sealing the gateway's marks, from its own bucket's manifest key (HKDF)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"meterseal kvs marks/1")
    return hkdf.derive(manifest_key)
