"""Readiness: why a service cannot do its work now (its store or bus gone), cheap to ask.

A stage lists `Check`s: blocking callables that return a one-line reason (no password) or
None. `Readiness.reason()` runs them in a thread at most once per `every` seconds and answers
every other call from that result, so a scraper polling /readyz costs no query per scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Check = Callable[[], str | None]
CHECK_EVERY = 2.0  # seconds a result is reused; /readyz lags a failure by at most this


class Readiness:
    """The stage's checks, run at most once per `every` seconds; the first reason, or None."""

    def __init__(self, *checks: Check, every: float = CHECK_EVERY) -> None:
        self.checks = list(checks)
        self.every = every
        self._reason: str | None = None
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    def add(self, check: Check) -> None:
        """Also check `check`."""
        self.checks.append(check)

    async def reason(self) -> str | None:
        """Why the stage is not ready (a fresh or cached answer), or None when it is."""
        if not self.checks:
            return None
        async with self._lock:  # concurrent scrapes share one run of the checks
            if self._checked_at is None or time.monotonic() - self._checked_at >= self.every:
                self._reason = await asyncio.to_thread(self._run)
                self._checked_at = time.monotonic()
            return self._reason

    def _run(self) -> str | None:
        for check in self.checks:
            try:
                reason = check()
            except Exception as exc:  # a check that fails is a reason, not a crash of /readyz
                reason = f"readiness check failed: {type(exc).__name__}"
            if reason is not None:
                return reason
        return None
