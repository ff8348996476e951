"""The administrators' change log (sans-IO): who changed what, when, on which object, outcome.

Every change an administrator makes or attempts through the portal (a meter provisioned or
revoked, a tariff published, a CAS secret rotated, a measurement revoked) is one `Change`.
The entries form a hash chain: each entry's digest is SHA-256 over the previous entry's digest
and the entry's canonical encoding, so an entry rewritten, removed or inserted in the store
breaks every digest after it (`check_chain` names the first). The chain proves the order and
content of what is stored against someone who edits rows; someone who rewrites the whole chain
from the edit on is caught only by a digest kept elsewhere (the page shows the newest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

GENESIS = bytes(32)  # the "previous digest" of the first entry
DONE = "done"


@dataclass(frozen=True)
class ChangeRequest:
    """A change as recorded: who (subject, roles), what (action, object), outcome, detail."""

    at: float
    subject: str
    roles: str
    action: str  # e.g. "meter.provision", "tariff.publish", "cas.secret.rotate"
    object_id: str
    outcome: str  # "done", or "refused: reason" / "failed: reason"
    detail: str = ""


@dataclass(frozen=True)
class Change:
    """A stored change: its request, its place in the log and its chain digests."""

    id: int
    request: ChangeRequest
    previous: bytes
    digest: bytes


def encode(request: ChangeRequest) -> bytes:
    """The canonical bytes of a change (sorted-key JSON, UTF-8, the time as repr of float)."""
    fields = {
        "at": repr(float(request.at)),
        "subject": request.subject,
        "roles": request.roles,
        "action": request.action,
        "object": request.object_id,
        "outcome": request.outcome,
        "detail": request.detail,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()


def chain_digest(previous: bytes, request: ChangeRequest) -> bytes:
    """The digest of `request` following the entry whose digest is `previous`."""
    return hashlib.sha256(b"meterseal-change-v1\x00" + previous + encode(request)).digest()


def check_chain(changes: Sequence[Change], start: bytes = GENESIS) -> list[str]:
    """Problems of a run of consecutive changes (empty: each links to the one before)."""
    problems: list[str] = []
    previous = start
    for change in changes:
        if change.previous != previous:
            problems.append(f"entry {change.id} does not follow the entry before it")
        elif change.digest != chain_digest(previous, change.request):
            problems.append(f"entry {change.id} differs from what was recorded")
        previous = change.digest
        if problems:
            break  # everything after the first break is unanchored
    return problems


class ChangeLog(Protocol):
    """Where changes are kept (storage's ChangeStore)."""

    def record(self, request: ChangeRequest) -> Change:
        """Append `request` to the chain; the stored change."""
        ...

    def changes(self, after: int = 0, limit: int | None = None) -> list[Change]:
        """Changes with id > `after`, oldest first, at most `limit`."""
        ...

    def together(self) -> AbstractContextManager[object]:
        """A transaction that the changes this thread makes inside it to the log's own store
        join, with the entries recorded: committed together, or neither."""
        ...
