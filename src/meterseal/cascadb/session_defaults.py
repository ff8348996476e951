"""A session's defaults for the transactions it begins (PostgreSQL's
default_transaction_isolation and default_transaction_read_only), as PostgreSQL's SET changes
them: undone when the transaction the SET ran in rolls back, and a SET LOCAL's only until that
transaction ends; RESET brings back those the session started with (its startup packet's)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class SessionModes:
    """The default modes of a session's next transactions."""

    isolation: str
    read_only: bool = False


Mark = tuple[SessionModes, dict[str, Any]]  # what a savepoint keeps of the defaults


class Defaults:
    """The default modes now (`now`) and what a COMMIT or ROLLBACK brings back."""

    def __init__(self, isolation: str) -> None:
        self.now = SessionModes(isolation)
        self.start = self.now  # what RESET brings back
        self._before: SessionModes | None = None  # when the open transaction's first SET ran
        self._local: dict[str, Any] = {}  # the modes a SET LOCAL changed: their values before

    def set(self, *, in_transaction: bool, local: bool = False, **modes: Any) -> None:
        """Set `modes` (isolation, read_only) from now on; in a transaction, undone if it
        rolls back (as PostgreSQL's SET, an implicit transaction's too). `local` (SET LOCAL):
        until the transaction ends; outside one, no effect (PostgreSQL warns)."""
        if local and not in_transaction:
            return
        if in_transaction and self._before is None:
            self._before = self.now
        for name in modes:
            if local:
                self._local.setdefault(name, getattr(self.now, name))
            else:  # a plain SET outlives the transaction, a SET LOCAL before it in it too
                self._local.pop(name, None)
        self.now = replace(self.now, **modes)

    def begin_with(self, modes: SessionModes) -> None:
        """The session starts with `modes` (its startup packet's), which RESET brings back."""
        self.now = self.start = modes

    def reset(self, names: tuple[str, ...], *, in_transaction: bool, local: bool = False) -> None:
        """Set the modes `names` back to the session's start, as `set` sets them."""
        start = {name: getattr(self.start, name) for name in names}
        self.set(in_transaction=in_transaction, local=local, **start)

    def end(self, committed: bool) -> None:
        """The transaction ended: a ROLLBACK undoes its SETs, a COMMIT its SET LOCALs."""
        if not committed and self._before is not None:
            self.now = self._before
        elif committed and self._local:
            self.now = replace(self.now, **self._local)
        self._before = None
        self._local = {}

    def mark(self) -> Mark:
        """What a SAVEPOINT keeps: the modes now and what its transaction's SET LOCALs undo."""
        return self.now, dict(self._local)

    def back_to(self, mark: Mark) -> None:
        """ROLLBACK TO a savepoint: the modes, and the SET LOCALs in force, as at its `mark`
        (a plain SET rolled back gives a SET LOCAL before it its end with the transaction)."""
        self.now, local = mark
        self._local = dict(local)
