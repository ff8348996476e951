"""A command's lifecycle as one transition table: issued, then exactly one end.

The head-end issues a command (signed, logged) and then learns one end: the meter did it,
the meter failed to, the agent refused it, or it expired unanswered. The end of a command
comes from the agent's signed result, a peer's message (`Driver.PEER`): a second result for
the same command, or a result for a command never issued, is the peer's fault and refused
as `CommandStateRefused`. The log check replays the same table over the log's entries.
"""

from __future__ import annotations

import enum
from typing import Final

from meterseal.commands.model import Outcome
from meterseal.runtime.transitions import (
    Driver,
    LocalProtocolError,
    RemoteProtocolError,
    TransitionTable,
)


class CommandState(enum.StrEnum):
    """Where a command is: issued and waiting, or one of its four ends."""

    ISSUED = "issued"
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    UNANSWERED = "unanswered"


class CommandEvent(enum.StrEnum):
    """What moves a command: its issue, the agent's answer, or its expiry unanswered."""

    ISSUE = "issue"
    COMPLETE = "complete"
    FAIL = "fail"
    REFUSE = "refuse"
    EXPIRE = "expire"


class CommandStateError(LocalProtocolError):
    """The head-end drove a move the command's table refuses: a bug in the head-end."""


class CommandStateRefused(RemoteProtocolError):
    """An answer the command's state does not allow (a second result, a result of nothing)."""


S, E = CommandState, CommandEvent
TRANSITIONS: Final[TransitionTable[CommandState, CommandEvent]] = TransitionTable(
    "command",
    {
        (None, E.ISSUE): S.ISSUED,
        (S.ISSUED, E.COMPLETE): S.DONE,
        (S.ISSUED, E.FAIL): S.FAILED,
        (S.ISSUED, E.REFUSE): S.REFUSED,
        (S.ISSUED, E.EXPIRE): S.UNANSWERED,
    },
    local_error=CommandStateError,
    remote_error=CommandStateRefused,
)
FINAL: Final[frozenset[CommandState]] = frozenset(CommandState) - {
    s for s in TRANSITIONS.sources() if s is not None
}
ANSWER: Final[dict[Outcome, CommandEvent]] = {
    Outcome.DONE: E.COMPLETE,
    Outcome.FAILED: E.FAIL,
    Outcome.REFUSED: E.REFUSE,
}


def step(state: CommandState | None, event: CommandEvent) -> CommandState:
    """The state after `event`; an answer is the agent's (a peer's), the rest the head-end's."""
    by = Driver.PEER if event in ANSWER.values() else Driver.US
    return TRANSITIONS.step(state, event, by=by)
