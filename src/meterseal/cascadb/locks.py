"""The database's locks: one writer at a time, and readers kept out while a commit applies.

A write transaction holds `writer` from its first statement (or its first write, for a
transaction begun to read) to its end. Its writes stay in its buffer until COMMIT, so the
store holds only committed data; readers read it directly, each statement under a shared
hold of `applying`, which COMMIT takes exclusively while it writes its batch. So no reader
sees a batch half-applied, and a reader never waits for an open write transaction, only for
its commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from meterseal.cascadb.errors import OperationalError


class ApplyLock:
    """Shared for statements that read committed data, exclusive for a commit's batch."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._state = threading.Condition()
        self._readers = 0
        self._applying = False
        self._waiting = 0  # commits waiting: new readers let them go first

    def _wait(self, ready: object, deadline: float) -> None:
        while not ready():  # type: ignore[operator]
            left = deadline - time.monotonic()
            if left <= 0:
                raise OperationalError(f"the database stayed busy for {self.timeout} s")
            self._state.wait(left)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Read committed data (no commit applies meanwhile)."""
        with self._state:
            self._wait(lambda: not self._applying and not self._waiting, self._deadline())
            self._readers += 1
        try:
            yield
        finally:
            with self._state:
                self._readers -= 1
                self._state.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Apply a commit's batch (no reader reads meanwhile)."""
        with self._state:
            self._waiting += 1
            try:
                self._wait(lambda: not self._applying and not self._readers, self._deadline())
            finally:
                self._waiting -= 1
            self._applying = True
        try:
            yield
        finally:
            with self._state:
                self._applying = False
                self._state.notify_all()

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout
