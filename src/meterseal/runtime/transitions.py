"""One way to write a protocol as a transition table, and to refuse what it does not allow.

A `TransitionTable` maps (state, event) to the next state, with None for the state of
something the protocol has not met yet; any other pair is refused. Who
drove the event decides what a refusal means, as in h11: an event our own code drove
(`Driver.US`) that the table refuses is a bug here, `LocalProtocolError`; one a peer's
message drove (`Driver.PEER`) is the peer's fault, `RemoteProtocolError`, which a service
answers as a refusal. Each protocol keeps its table in its own module and may name its own
subclasses of the two errors (`local_error=`, `remote_error=`) so its callers catch those.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterator, Mapping
from typing import Generic, TypeVar

from meterseal.errors import MetersealError

S = TypeVar("S", bound=Hashable)
E = TypeVar("E", bound=enum.Enum)


class Driver(enum.Enum):
    """Who drove an event: our own code, or a peer's message."""

    US = "us"
    PEER = "peer"


class TransitionError(MetersealError):
    """An event that a protocol's table does not allow in the current state."""

    # Defaults, so that a protocol's error class can also derive from its own domain error,
    # whose constructor calls this one with the message alone (cooperative __init__).
    def __init__(self, message: str, state: object = None, event: object = None) -> None:
        super().__init__(message)
        self.state = state
        self.event = event


class LocalProtocolError(TransitionError):
    """Our own code drove an event the table refuses: a bug here, never the peer's input."""


class RemoteProtocolError(TransitionError):
    """A peer drove an event the table refuses: the peer's fault, to be answered as a refusal."""


def _name(value: object) -> str:
    if value is None:
        return "unknown"
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


class TransitionTable(Mapping[tuple[S | None, E], S], Generic[S, E]):
    """A protocol's moves, (state, event) -> next state; `step` refuses any other pair."""

    def __init__(
        self,
        protocol: str,
        moves: Mapping[tuple[S | None, E], S],
        *,
        local_error: type[LocalProtocolError] = LocalProtocolError,
        remote_error: type[RemoteProtocolError] = RemoteProtocolError,
    ) -> None:
        self.protocol = protocol
        self._moves = dict(moves)
        self._errors: dict[Driver, type[TransitionError]] = {
            Driver.US: local_error,
            Driver.PEER: remote_error,
        }

    def __getitem__(self, key: tuple[S | None, E]) -> S:
        return self._moves[key]

    def __iter__(self) -> Iterator[tuple[S | None, E]]:
        return iter(self._moves)

    def __len__(self) -> int:
        return len(self._moves)

    def step(self, state: S | None, event: E, *, by: Driver) -> S:
        """The state after `event`; the driver's error (see the module) if the table has none."""
        try:
            return self._moves[(state, event)]
        except KeyError:
            message = f"{self.protocol} cannot {_name(event)} when {_name(state)}"
            raise self._errors[by](message, state, event) from None

    def sources(self) -> frozenset[S | None]:
        """The states some event moves on from (every other state is final)."""
        return frozenset(state for state, _ in self._moves)
