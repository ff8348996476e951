"""A batch job's lifecycle as one transition table: submitted, running, then one end.

Every change of a record's state is a move of the table, its creation too (submit, from no
state). The convention for a refused move is the runtime's (`meterseal.runtime.transitions`):
a move the Manager itself drove (submit, start, succeed, fail) that the table refuses is a
bug here, `JobStateError` (or, for submit, a new id drawn twice: the HTTP API answers it 409,
a conflict); one asked for (a user's cancel of a finished job, a run of a job
that ended) is refused to whoever asked, `JobRefused`, which the CLI and API print as a
refusal. Moves step from the state recorded on disk, under the record's lock (`JobBook.move`):
a user's cancel that lands before the Manager's start or end of the job stays, and the
Manager's move is dropped, not refused (it drove nothing out of a final state; it read the job
before the cancel).
"""

from __future__ import annotations

import enum
from typing import Final

from meterseal.runtime.transitions import (
    Driver,
    LocalProtocolError,
    RemoteProtocolError,
    TransitionTable,
)


class JobState(enum.StrEnum):
    """Where a job is: waiting, running, or one of its three ends."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobEvent(enum.StrEnum):
    """What moves a job: the submission, the Manager's start, run and ends, a user's cancel."""

    SUBMIT = "submit"
    START = "start"
    RUN = "run"  # asked of a started job (a user's `jobs run`, a runner): it runs on
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"


class JobStateError(LocalProtocolError):
    """The Manager drove a move the job's table refuses: a bug in the Manager."""


class JobRefused(RemoteProtocolError):
    """A move asked for that the job's state does not allow (cancel or run a finished job)."""


S, E = JobState, JobEvent
TRANSITIONS: Final[TransitionTable[JobState, JobEvent]] = TransitionTable(
    "job",
    {
        (None, E.SUBMIT): S.SUBMITTED,
        (S.SUBMITTED, E.START): S.RUNNING,
        (S.SUBMITTED, E.CANCEL): S.CANCELLED,
        (S.SUBMITTED, E.FAIL): S.FAILED,  # its input could not be read
        (S.RUNNING, E.RUN): S.RUNNING,  # started, or left running by a Manager that stopped
        (S.RUNNING, E.SUCCEED): S.SUCCEEDED,
        (S.RUNNING, E.FAIL): S.FAILED,
        (S.RUNNING, E.CANCEL): S.CANCELLED,
    },
    local_error=JobStateError,
    remote_error=JobRefused,
)
FINAL: Final[frozenset[JobState]] = frozenset(JobState) - {
    s for s in TRANSITIONS.sources() if s is not None
}


def step(state: JobState | None, event: JobEvent) -> JobState:
    """The state after `event`; cancel and run are asked for, every other move the Manager's."""
    by = Driver.PEER if event in (JobEvent.CANCEL, JobEvent.RUN) else Driver.US
    return TRANSITIONS.step(state, event, by=by)
