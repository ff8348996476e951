"""Pending admission challenges: each nonce a record of its own, expiring, and bounded.

A challenge is an admission attempt in the CHALLENGED state (see `lifecycle`), kept under
its nonce rather than under the member's name: a second challenge for the same name, from
anyone, gets a nonce of its own and leaves the first one answerable, so no NATS client can
keep another's admission failing by asking again (nor by answering with a wrong nonce: a
request finds only the attempt whose nonce it carries). An attempt leaves the table when it
is answered (admitted or refused, the nonce is spent), when its name is admitted through
another nonce, or when it expires (swept on the caller's clock whenever the table is used).
Nothing else records a would-be member, so asking costs the publisher no lasting memory.

The table is bounded: at most `per_requester` pending challenges per requester (over NATS,
the inbox the reply goes to) and `total` in all. Beyond either, a challenge is refused with
the same answer, TOO_MANY_CHALLENGES, until some are answered or expire. A requester names
itself, so the per-requester bound keeps one ordinary client from taking the whole table and
`total` bounds the memory whatever names the clients give.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from meterseal.dissemination.errors import AdmissionRefused, Reason
from meterseal.dissemination.lifecycle import TRANSITIONS, Event, State
from meterseal.runtime.transitions import Driver

MAX_PER_REQUESTER: Final = 16  # a client joins a few members at once, not hundreds
MAX_PENDING: Final = 10_000  # about 3 MB of records; 167 challenges/s to keep it full at 60 s
BUSY: Final = "too many pending challenges; ask again later"


@dataclass(frozen=True)
class Challenge:
    """A nonce issued for `name` to `requester`, answerable until `expires`."""

    name: str
    requester: str
    expires: float


class PendingChallenges:
    """The CHALLENGED attempts by nonce, swept after `ttl` seconds and capped."""

    def __init__(
        self, ttl: float, *, per_requester: int = MAX_PER_REQUESTER, total: int = MAX_PENDING
    ) -> None:
        self.ttl, self.per_requester, self.total = ttl, per_requester, total
        # Insertion order is expiry order (one ttl, a clock that does not go back), so a
        # sweep stops at the first live one; a clock stepped back only delays a sweep.
        self._by_nonce: dict[bytes, Challenge] = {}
        self._held: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_nonce)

    def held(self, requester: str) -> int:
        """How many pending challenges `requester` holds."""
        return self._held[requester]

    def issue(self, name: str, requester: str, nonce: bytes, *, now: float) -> None:
        """Record `nonce` for `name`; AdmissionRefused(TOO_MANY_CHALLENGES) beyond a bound."""
        self.sweep(now)
        if self._held[requester] >= self.per_requester or len(self._by_nonce) >= self.total:
            raise AdmissionRefused(Reason.TOO_MANY_CHALLENGES, BUSY)
        self._by_nonce[nonce] = Challenge(name, requester, now + self.ttl)
        self._held[requester] += 1

    def take(self, name: str, nonce: bytes) -> Challenge | None:
        """The attempt `nonce` answers for `name`, spent (removed); None if there is none.

        An expired one is still returned (the caller refuses it as expired) until swept.
        """
        found = self._by_nonce.get(nonce)
        if found is None or found.name != name:
            return None  # a nonce for another name is left for its own requester
        self._drop(nonce, found)
        return found

    def forget(self, name: str) -> None:
        """Drop every attempt for `name` (it was admitted: they can no longer succeed)."""
        for nonce, found in [(n, c) for n, c in self._by_nonce.items() if c.name == name]:
            self._drop(nonce, found)

    def sweep(self, now: float) -> int:
        """Drop the attempts expired by `now`; how many."""
        expired = []
        for nonce, found in self._by_nonce.items():
            if found.expires >= now:
                break
            expired.append((nonce, found))
        for nonce, found in expired:
            TRANSITIONS.step(State.CHALLENGED, Event.EXPIRE, by=Driver.US)
            self._drop(nonce, found)
        return len(expired)

    def _drop(self, nonce: bytes, found: Challenge) -> None:
        del self._by_nonce[nonce]
        self._held[found.requester] -= 1
        if not self._held[found.requester]:
            del self._held[found.requester]
