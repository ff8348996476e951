"""A member's admission lifecycle, as one transition table.

    (none)      --challenge--> challenged   a nonce is issued: an attempt of its own
    challenged  --admit------> admitted     attested (unless public), keys handed out
    challenged  --refuse-----> refused      the request failed a check; the nonce is spent
    challenged  --expire-----> expired      not answered in time; swept by the publisher
    admitted    --rekey------> admitted     a rotation handed the member fresh keys
    admitted    --remove-----> removed      subscriptions dropped, its keys rotated away
    removed     --challenge--> challenged   may apply again from the start

Anything else is refused. An attempt (challenged, then refused or expired) lives under its
nonce in `challenges.PendingChallenges`, not under the member's name: several may be pending
for one name and none replaces or spends another, and a refused or expired one is forgotten.
Only an admitted (later removed) member is a record under its name, so a challenge reads the
name's record (none, removed: may apply; admitted: refused). A member's request (challenge,
admit, refuse) or the operator's command (remove) that the table refuses is the peer's fault:
`InvalidTransition`, an `AdmissionRefused` answered to the peer. A rotation (rekey) and a
sweep (expire) are driven by the publisher itself, so a refused one is a bug here
(`LocalProtocolError`).
"""

from __future__ import annotations

import enum
from typing import Final

from meterseal.dissemination.errors import AdmissionRefused, Reason
from meterseal.runtime.transitions import RemoteProtocolError, TransitionTable


class State(enum.StrEnum):
    """Where a member stands with the publisher."""

    CHALLENGED = "challenged"
    ADMITTED = "admitted"
    REFUSED = "refused"
    EXPIRED = "expired"
    REMOVED = "removed"


class Event(enum.StrEnum):
    """What happens to a member."""

    CHALLENGE = "challenge"
    ADMIT = "admit"
    REFUSE = "refuse"
    EXPIRE = "expire"
    REKEY = "rekey"
    REMOVE = "remove"


class InvalidTransition(AdmissionRefused, RemoteProtocolError):
    """A member or the operator asked for a move the admission table does not have."""

    def __init__(self, message: str, state: object = None, event: object = None) -> None:
        super().__init__(Reason.INVALID_TRANSITION, message)
        self.state, self.event = state, event


TRANSITIONS: Final[TransitionTable[State, Event]] = TransitionTable(
    "admission",
    {
        (None, Event.CHALLENGE): State.CHALLENGED,
        (State.CHALLENGED, Event.ADMIT): State.ADMITTED,
        (State.CHALLENGED, Event.REFUSE): State.REFUSED,
        (State.CHALLENGED, Event.EXPIRE): State.EXPIRED,
        (State.ADMITTED, Event.REKEY): State.ADMITTED,
        (State.ADMITTED, Event.REMOVE): State.REMOVED,
        (State.REMOVED, Event.CHALLENGE): State.CHALLENGED,
    },
    remote_error=InvalidTransition,
)
