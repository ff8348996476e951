"""Login and token-use limits (sans-IO): failures back off, requests spend a bucket.

Keys name what a limit counts against: `source:ADDRESS` (the peer, without its port) and
`account:NAME` (also for names that do not exist, so a refusal says nothing about which
do). After `free_failures` failed attempts a key must wait `base_delay` seconds, doubled for
each further failure up to `max_delay`; a success clears the account's failures (never the
source's: one good password must not launder a source's guessing). Each authenticated
subject and each source also spend a token bucket per request. Memory is bounded: beyond
`tracked` keys the least recently touched are forgotten.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleLimits:
    """How many failures are free, how the back-off grows, how fast requests may come."""

    free_failures: int = 5
    base_delay: float = 1.0  # seconds to wait after the first failure beyond the free ones
    max_delay: float = 900.0
    forget_after: float = 3600.0  # a key with no failure for this long starts afresh
    request_burst: int = 600  # requests a subject or source may make at once
    request_rate: float = 100.0  # requests per second it earns back
    tracked: int = 50_000


@dataclass
class _State:
    failures: int = 0
    last_failure: float = 0.0
    tokens: float = -1.0  # -1: the bucket is full (not yet used)
    last_request: float = 0.0


class Throttle:
    """Who must wait before trying again, and for how long."""

    def __init__(self, limits: ThrottleLimits | None = None) -> None:
        self.limits = limits or ThrottleLimits()
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._lock = threading.Lock()  # handlers run in the event loop and in threads

    def _state(self, key: str) -> _State:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
            if len(self._states) > self.limits.tracked:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return state

    def _wait(self, state: _State, now: float) -> float:
        limits = self.limits
        if now - state.last_failure >= limits.forget_after:
            state.failures = 0
        beyond = state.failures - limits.free_failures
        if beyond < 0:
            return 0.0
        delay = min(limits.max_delay, limits.base_delay * 2.0**beyond)
        return max(0.0, state.last_failure + delay - now)

    def retry_after(self, keys: Iterable[str], now: float) -> float:
        """Seconds before any of `keys` may try again (0: now)."""
        with self._lock:
            return max((self._wait(self._state(k), now) for k in keys), default=0.0)

    def failed(self, keys: Iterable[str], now: float) -> None:
        """Count a failed attempt against each of `keys`."""
        with self._lock:
            for key in keys:
                state = self._state(key)
                self._wait(state, now)  # forgets stale failures first
                state.failures += 1
                state.last_failure = now

    def succeeded(self, key: str) -> None:
        """Clear the failures of `key` (an account that just proved its password)."""
        with self._lock:
            self._states.pop(key, None)

    def spend(self, key: str, now: float) -> bool:
        """Take one request from `key`'s bucket; False when it is empty."""
        limits = self.limits
        with self._lock:
            state = self._state(key)
            if state.tokens < 0:
                state.tokens, state.last_request = float(limits.request_burst), now
            earned = max(0.0, now - state.last_request) * limits.request_rate
            state.tokens = min(float(limits.request_burst), state.tokens + earned)
            state.last_request = max(state.last_request, now)
            if state.tokens < 1.0:
                return False
            state.tokens -= 1.0
            return True
