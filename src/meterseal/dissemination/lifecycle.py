"""A member's admission lifecycle, as one transition table.

    (none)      --challenge--> challenged   a nonce is issued (a new one replaces the old)
    challenged  --admit------> admitted     attested (unless public), keys handed out
    challenged  --refuse-----> refused      the request failed a check; the nonce is spent
    admitted    --rekey------> admitted     a rotation handed the member fresh keys
    admitted    --remove-----> removed      subscriptions dropped, its keys rotated away
    refused, removed --challenge--> challenged   may apply again from the start

Anything else (an admitted member asking to be admitted again, say) is refused.
"""

from __future__ import annotations

import enum
from typing import Final

from meterseal.dissemination.errors import AdmissionRefused, Reason


class State(enum.StrEnum):
    """Where a member stands with the publisher."""

    CHALLENGED = "challenged"
    ADMITTED = "admitted"
    REFUSED = "refused"
    REMOVED = "removed"


class Event(enum.StrEnum):
    """What happens to a member."""

    CHALLENGE = "challenge"
    ADMIT = "admit"
    REFUSE = "refuse"
    REKEY = "rekey"
    REMOVE = "remove"


TRANSITIONS: Final[dict[tuple[State | None, Event], State]] = {
    (None, Event.CHALLENGE): State.CHALLENGED,
    (State.CHALLENGED, Event.CHALLENGE): State.CHALLENGED,
    (State.CHALLENGED, Event.ADMIT): State.ADMITTED,
    (State.CHALLENGED, Event.REFUSE): State.REFUSED,
    (State.ADMITTED, Event.REKEY): State.ADMITTED,
    (State.ADMITTED, Event.REMOVE): State.REMOVED,
    (State.REFUSED, Event.CHALLENGE): State.CHALLENGED,
    (State.REMOVED, Event.CHALLENGE): State.CHALLENGED,
}


def step(state: State | None, event: Event) -> State:
    """The state after `event`; AdmissionRefused(INVALID_TRANSITION) if the table has none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        where = state.value if state else "unknown"
        raise AdmissionRefused(
            Reason.INVALID_TRANSITION, f"cannot {event.value} a member that is {where}"
        ) from None
