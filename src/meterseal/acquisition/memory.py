"""An in-memory `ReadingSink`: the test fake of the store, shipped as real code."""

from __future__ import annotations

from collections.abc import Sequence

from meterseal.acquisition.records import AcceptedReading, Rejection, StoreOutcome


class MemorySink:
    """Keeps accepted originals by (meter id, counter) and the quarantine; can be told to fail."""

    def __init__(self) -> None:
        self.originals: dict[tuple[str, int], bytes] = {}
        self.quarantine: list[Rejection] = []
        self.fail = False
        self.batches = 0

    def save_batch(
        self, accepted: Sequence[AcceptedReading], rejected: Sequence[Rejection]
    ) -> list[StoreOutcome]:
        """Store a batch the way the real store does (idempotent, conflicts flagged)."""
        if self.fail:
            raise OSError("memory sink told to fail")
        outcomes = []
        for reading in accepted:
            key = (reading.meter_id, reading.counter)
            known = self.originals.get(key)
            if known is None:
                self.originals[key] = reading.signed_original
                outcomes.append(StoreOutcome.STORED)
            elif known == reading.signed_original:
                outcomes.append(StoreOutcome.DUPLICATE)
            else:
                outcomes.append(StoreOutcome.CONFLICT)
        self.quarantine.extend(rejected)
        self.batches += 1
        return outcomes

    def reasons(self) -> list[str]:
        """The reason of every quarantined packet, in arrival order."""
        return [r.reason for r in self.quarantine]
