"""A service's blocking call off the event loop, its domain errors answered as HTTP problems.

An API over a synchronous core (the jobs Manager, CascaDB's sessions) runs each call in a
worker thread and answers the errors it expects with a status of their own, counting each in
the service's counters; any other error stays a 500 (the runtime's handler). An API on a store
answers the store's failures as 503 (`answer_store_unavailable`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from meterseal.errors import StorageError

T = TypeVar("T")


@dataclass(frozen=True)
class Refusal:
    """An error a call may raise, the status it answers and the counter it adds to (if any)."""

    error: type[Exception]
    status: int
    counter: str | None = None


async def refusing(call: Callable[[], T], refusals: Sequence[Refusal], counts: Counter[str]) -> T:
    """`call()` in a worker thread; an error of the first `refusals` entry that names it answers."""
    try:
        return await asyncio.to_thread(call)
    except Exception as exc:
        for refusal in refusals:  # in order, as `except` clauses: a subclass before its base
            if isinstance(exc, refusal.error):
                if refusal.counter is not None:
                    counts[refusal.counter] += 1
                raise HTTPException(refusal.status, str(exc)) from None
        raise


def answer_store_unavailable(app: FastAPI, counts: Counter[str], log: logging.Logger) -> None:
    """Answer a StorageError from any route of `app` as 503, retry later; count and log it."""

    @app.exception_handler(StorageError)
    async def store_unavailable(_request: Request, exc: StorageError) -> JSONResponse:
        # The cause names the store (a URL, a path) and is for the operator's log; callers
        # learn only that retrying may help.
        log.warning("%s: %s", app.title, exc)
        counts["store_unavailable"] += 1
        detail = {"detail": "the store is unavailable; retry later"}
        return JSONResponse(detail, 503, {"Retry-After": "5"})
