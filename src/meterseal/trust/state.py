"""The CAS's state: its records, the `CasState` interface, and an in-memory implementation.

`MemoryCasState` is the fake that ships as code (tests, one-process use); `CasStore`
(`meterseal.trust.cas_store`) keeps the same state in SQLite or PostgreSQL. Both make the
two operations that must not race atomic: moving a nonce from one state to the next (so a
quote is used once), and appending to the log (so its indices never skip or repeat).
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from meterseal.crypto import cose
from meterseal.transparency.merkle import MerkleTree, leaf_hash


class NonceState(enum.StrEnum):
    """Where a nonce is in the release protocol (`cas.TRANSITIONS`)."""

    ISSUED = "issued"
    ATTESTED = "attested"
    RELEASED = "released"
    REFUSED = "refused"
    EXPIRED = "expired"


class NonceRecord(NamedTuple):
    """A nonce the CAS issued."""

    nonce: bytes
    state: NonceState
    issued_at: float
    expires_at: float


class StoredSecret(NamedTuple):
    """One version of a secret, encrypted under the CAS master key."""

    name: str
    version: int
    sealed: bytes
    created_at: dt.datetime


class SecretInfo(NamedTuple):
    """A secret's metadata: never its value."""

    name: str
    latest_version: int
    versions: int
    updated_at: dt.datetime


class PolicyRule(NamedTuple):
    """One allow rule: `measurement`, claiming stage `stage`, may receive `secret`."""

    id: int
    stage: str
    measurement: bytes
    secret: str
    added_at: dt.datetime


class Revocation(NamedTuple):
    """A measurement that may receive nothing any more."""

    measurement: bytes
    revoked_at: dt.datetime
    reason: str


class SecretRevocation(NamedTuple):
    """A secret withdrawn through `version`: released to nobody until a newer version."""

    name: str
    version: int
    revoked_at: dt.datetime
    reason: str


@dataclass(frozen=True)
class LogEntry:
    """One event of the CAS log; `encode()` is the Merkle leaf's data."""

    seq: int
    at: float
    event: str  # release, secret-added, policy-added, measurement-revoked
    outcome: str  # released, refused, done
    stage: str = ""
    measurement: bytes | None = None
    secrets: tuple[tuple[str, int], ...] = ()  # (name, version); version 0: not released
    backend: str = ""
    reason: str = ""
    assurance: str = ""  # what the attestation guarantees ("simulated: no hardware guarantee")

    def encode(self) -> bytes:
        """Canonical CBOR of every field."""
        return cose.dumps(
            {
                "seq": self.seq,
                "at": self.at,
                "event": self.event,
                "outcome": self.outcome,
                "stage": self.stage,
                "measurement": self.measurement,
                "secrets": [list(s) for s in self.secrets],
                "backend": self.backend,
                "reason": self.reason,
                "assurance": self.assurance,
            }
        )


class LogRow(NamedTuple):
    """A stored log entry with its leaf hash, the tree root after it and the root's MAC."""

    seq: int
    entry: bytes
    leaf_hash: bytes
    root: bytes
    mac: bytes


EntryFor = Callable[[int], LogEntry]
HeadMac = Callable[[int, bytes], bytes]
SealFor = Callable[[int], bytes]


class CasState(Protocol):
    """What the CAS core keeps between requests."""

    def add_nonce(self, nonce: bytes, issued_at: float, expires_at: float) -> None:
        """Remember an issued nonce."""
        ...

    def nonce(self, nonce: bytes) -> NonceRecord | None:
        """A nonce's record, if it was issued and not purged."""
        ...

    def move_nonce(self, nonce: bytes, source: NonceState, target: NonceState) -> bool:
        """Atomically move a nonce from `source` to `target`; False if it was not in `source`."""
        ...

    def purge_nonces(self, before: float) -> int:
        """Forget nonces that expired before `before`; how many."""
        ...

    def add_secret(self, name: str, seal_for: SealFor, created_at: dt.datetime) -> int:
        """Store the next version of `name` (sealed by `seal_for(version)`); that version."""
        ...

    def latest_secret(self, name: str) -> StoredSecret | None:
        """The newest version of a secret."""
        ...

    def secret_infos(self) -> list[SecretInfo]:
        """Every secret's metadata, by name."""
        ...

    def add_rule(self, stage: str, measurement: bytes, secret: str, added_at: dt.datetime) -> int:
        """Add an allow rule; its id (the existing id if the same rule exists)."""
        ...

    def rules(self) -> list[PolicyRule]:
        """Every allow rule, oldest first."""
        ...

    def add_revocation(self, measurement: bytes, revoked_at: dt.datetime, reason: str) -> bool:
        """Revoke a measurement; False if it already was."""
        ...

    def revocations(self) -> list[Revocation]:
        """Every revoked measurement."""
        ...

    def add_secret_revocation(
        self, name: str, version: int, revoked_at: dt.datetime, reason: str
    ) -> bool:
        """Withdraw secret `name` through `version`; False if it already was (that far)."""
        ...

    def secret_revocations(self) -> list[SecretRevocation]:
        """Every secret revocation, oldest first."""
        ...

    def append_log(self, entry_for: EntryFor, head_mac: HeadMac, tree: MerkleTree) -> LogRow:
        """Append `entry_for(seq)` atomically; `tree` is caught up, then extended by it."""
        ...

    def log_rows(self, after: int = -1, limit: int | None = None) -> list[LogRow]:
        """Log rows with seq > `after`, in order."""
        ...


def next_log_row(
    entry_for: EntryFor, head_mac: HeadMac, tree: MerkleTree
) -> tuple[LogRow, LogEntry]:
    """The row appending `entry_for(tree.size)` makes; `tree` is extended by its leaf."""
    entry = entry_for(tree.size)
    data = entry.encode()
    leaf = leaf_hash(data)
    seq = tree.append(leaf)
    return LogRow(seq, data, leaf, tree.root, head_mac(tree.size, tree.root)), entry


@dataclass
class MemoryCasState:
    """The CAS state in memory (thread-safe); gone with the process."""

    _nonces: dict[bytes, NonceRecord] = field(default_factory=dict)
    _secrets: dict[str, list[StoredSecret]] = field(default_factory=dict)
    _rules: list[PolicyRule] = field(default_factory=list)
    _revoked: dict[bytes, Revocation] = field(default_factory=dict)
    _withdrawn: list[SecretRevocation] = field(default_factory=list)
    _log: list[LogRow] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_nonce(self, nonce: bytes, issued_at: float, expires_at: float) -> None:
        """See `CasState`."""
        with self._lock:
            if nonce in self._nonces:
                raise ValueError("nonce issued twice")
            self._nonces[nonce] = NonceRecord(nonce, NonceState.ISSUED, issued_at, expires_at)

    def nonce(self, nonce: bytes) -> NonceRecord | None:
        """See `CasState`."""
        return self._nonces.get(nonce)

    def move_nonce(self, nonce: bytes, source: NonceState, target: NonceState) -> bool:
        """See `CasState`."""
        with self._lock:
            record = self._nonces.get(nonce)
            if record is None or record.state is not source:
                return False
            self._nonces[nonce] = record._replace(state=target)
            return True

    def purge_nonces(self, before: float) -> int:
        """See `CasState`."""
        with self._lock:
            old = [n for n, r in self._nonces.items() if r.expires_at < before]
            for nonce in old:
                del self._nonces[nonce]
            return len(old)

    def add_secret(self, name: str, seal_for: SealFor, created_at: dt.datetime) -> int:
        """See `CasState`."""
        with self._lock:
            versions = self._secrets.setdefault(name, [])
            version = len(versions) + 1
            versions.append(StoredSecret(name, version, seal_for(version), created_at))
            return version

    def latest_secret(self, name: str) -> StoredSecret | None:
        """See `CasState`."""
        versions = self._secrets.get(name)
        return versions[-1] if versions else None

    def secret_infos(self) -> list[SecretInfo]:
        """See `CasState`."""
        return [
            SecretInfo(name, v[-1].version, len(v), v[-1].created_at)
            for name, v in sorted(self._secrets.items())
        ]

    def add_rule(self, stage: str, measurement: bytes, secret: str, added_at: dt.datetime) -> int:
        """See `CasState`."""
        with self._lock:
            for rule in self._rules:
                if (rule.stage, rule.measurement, rule.secret) == (stage, measurement, secret):
                    return rule.id
            rule = PolicyRule(len(self._rules) + 1, stage, measurement, secret, added_at)
            self._rules.append(rule)
            return rule.id

    def rules(self) -> list[PolicyRule]:
        """See `CasState`."""
        return list(self._rules)

    def add_revocation(self, measurement: bytes, revoked_at: dt.datetime, reason: str) -> bool:
        """See `CasState`."""
        with self._lock:
            if measurement in self._revoked:
                return False
            self._revoked[measurement] = Revocation(measurement, revoked_at, reason)
            return True

    def revocations(self) -> list[Revocation]:
        """See `CasState`."""
        return list(self._revoked.values())

    def add_secret_revocation(
        self, name: str, version: int, revoked_at: dt.datetime, reason: str
    ) -> bool:
        """See `CasState`."""
        with self._lock:
            if any(r.name == name and r.version >= version for r in self._withdrawn):
                return False
            self._withdrawn.append(SecretRevocation(name, version, revoked_at, reason))
            return True

    def secret_revocations(self) -> list[SecretRevocation]:
        """See `CasState`."""
        return list(self._withdrawn)

    def append_log(self, entry_for: EntryFor, head_mac: HeadMac, tree: MerkleTree) -> LogRow:
        """See `CasState`."""
        with self._lock:
            for row in self._log[tree.size :]:
                tree.append(row.leaf_hash)
            row, _ = next_log_row(entry_for, head_mac, tree)
            self._log.append(row)
            return row

    def log_rows(self, after: int = -1, limit: int | None = None) -> list[LogRow]:
        """See `CasState`."""
        rows = self._log[after + 1 :]
        return rows if limit is None else rows[:limit]
