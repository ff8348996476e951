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
    # sealed packets the spool did not keep, by reason: `stale` (older than its keep window),
    # `future` (dated more than a day ahead); and its day files pruned as dated that far ahead
    unspooled: Counter[str] = field(default_factory=Counter)
    future_days_pruned: int = 0
    acks: Counter[str] = field(default_factory=Counter)  # the head-end's answers, by ack
    unacknowledged: int = 0  # sealed readings the head-end never answered
    seconds: float = 0.0

    def skip(self, error: MeterDriverError) -> None:
        """Count a meter skipped because its driver failed with `error`."""
        self.skipped[error.skip] += 1


def spool_line(report: AgentReport) -> str | None:
    """What the spool left out in the pass (agent.spool), if anything."""
    if not report.unspooled and not report.future_days_pruned:
        return None
    named = ", ".join(f"{k} {v}" for k, v in sorted(report.unspooled.items())) or "none"
    pruned = report.future_days_pruned
    return f"not spooled: {named}" + (
        f"; spool days dated ahead pruned: {pruned}" if pruned else ""
    )


# The store's refusals a rerun cannot undo: the head-end keeps one reading per meter and
# counter and refuses a counter it holds (replayed) or one below the newest it holds (stale).
HELD = ("replayed_counter", "stale_counter")
_KEPT = ("stored", "duplicate")


def loss_lines(report: AgentReport, refused: Counter[str] | None) -> list[str]:
    """What the head-end did not store of a pass, why, and whether running it again helps.

    `refused` is the store's refusals of the pass by reason (None: the store was not read;
    the head-end's ack carries no reason). Only unacknowledged readings are worth a rerun.
    """
    reasons = (
        Counter[str]()
        if refused is None
        else +Counter({k: v for k, v in refused.items() if k not in _KEPT})
    )
    rejected = max(report.acks["rejected"], sum(reasons.values()))
    lost = rejected + report.unacknowledged
    if not lost:
        return []
    lines = [
        f"{lost} sealed readings were not stored by the head-end (rejected {rejected}, "
        f"unacknowledged {report.unacknowledged})"
    ]
    if reasons:
        named = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        lines.append(f"the head-end's reasons: {named}")
    held = sum(reasons[k] for k in HELD)
    if held:
        lines.append(
            f"{held} refused as replayed_counter/stale_counter: the head-end already holds "
            "these or newer readings of those meters (an earlier pass, or `meterseal "
            "simulate`), so a rerun of this window is refused again; read meters, or a "
            "window, the head-end has not stored"
        )
    other = sum(reasons.values()) - held
    if other:
        lines.append(
            f"{other} refused for good: a rerun is refused again until what their reason "
            "names is fixed"
        )
    if rejected > sum(reasons.values()):
        lines.append(
            f"{rejected - sum(reasons.values())} rejected for reasons the head-end does not "
            "send (give --store to read them from its store): a rerun is refused again"
        )
    if report.unacknowledged:
        lines.append(
            f"{report.unacknowledged} never acknowledged (the head-end unreachable or "
            "overloaded): the meters keep them, run the pass again for this window once "
            "the head-end answers"
        )
    return lines
