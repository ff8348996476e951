"""What one pass of the sealing agent did: meters read, readings sealed, what it skipped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from meterseal.errors import MeterDriverError


@dataclass
class AgentReport:
    """Counters of an agent pass; `skipped` counts by reason (a driver error's `skip`)."""

    meters_read: int = 0
    readings_sealed: int = 0
    readings_resent: int = 0  # of those, packets an earlier pass sealed and spooled (agent.spool)
    readings_published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # meters skipped, by reason
    acks: Counter[str] = field(default_factory=Counter)  # the head-end's answers, by ack
    unacknowledged: int = 0  # sealed readings the head-end never answered
    seconds: float = 0.0

    def skip(self, error: MeterDriverError) -> None:
        """Count a meter skipped because its driver failed with `error`."""
        self.skipped[error.skip] += 1
