"""The service lifecycle: start, admin endpoint (health, readiness, metrics), drain, exit code.

Every meterseal process (the monolith head-end, each service of services mode, each trusted
worker) is a `Stage` run by `run_stage`: it starts the stage, serves `/healthz`, `/readyz`,
`/metrics` (Prometheus) and `/v1/counters` on an admin port (`/readyz` is 503 with a reason
while the stage is not ready or one of its `readiness` checks fails: store or bus gone),
prints one parseable `listening NAME ADDRESS` line per endpoint, runs until SIGINT/SIGTERM
(or the stage ends), then drains and stops. The admin endpoint serves HTTPS given
`admin_tls` (a trusted worker's uses the TLS key the CAS released to it). Errors map to exit
codes: a `MetersealError` prints its diagnostics and exits 2, anything else is logged and
exits 1. The lifecycle is the table below.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import ssl
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from fastapi import Response
from pydantic import BaseModel

from meterseal.errors import MetersealError, exit_code_for
from meterseal.runtime.address import format_address, parse_address
from meterseal.runtime.auth import PUBLIC, access
from meterseal.runtime.http import HttpServer, service_app
from meterseal.runtime.metrics import CONTENT_TYPE, ServiceMetrics
from meterseal.runtime.readiness import Readiness
from meterseal.runtime.transitions import Driver, LocalProtocolError, TransitionTable

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    """Where a service is in its life."""

    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class Event(enum.StrEnum):
    """What moves a service along."""

    START = "start"
    STARTED = "started"
    STOP = "stop"
    DRAINED = "drained"
    FAIL = "fail"


class LifecycleError(LocalProtocolError):
    """The lifecycle was driven along a move its table does not have: a bug in the runtime."""


# Only `serve_stage` drives these events, so a refused one is our bug (`Driver.US`).
TRANSITIONS: TransitionTable[State, Event] = TransitionTable(
    "service",
    {
        (State.CREATED, Event.START): State.STARTING,
        (State.STARTING, Event.STARTED): State.READY,
        (State.STARTING, Event.STOP): State.DRAINING,
        (State.STARTING, Event.FAIL): State.FAILED,
        (State.READY, Event.STOP): State.DRAINING,
        (State.READY, Event.FAIL): State.FAILED,
        (State.DRAINING, Event.DRAINED): State.STOPPED,
        (State.DRAINING, Event.FAIL): State.FAILED,
    },
    local_error=LifecycleError,
)


class Lifecycle:
    """The current state, moved only along TRANSITIONS."""

    def __init__(self) -> None:
        self.state = State.CREATED

    def on(self, event: Event) -> State:
        """Apply `event`; LifecycleError if the table has no such transition."""
        self.state = TRANSITIONS.step(self.state, event, by=Driver.US)
        return self.state


class Stage(Protocol):
    """What a service does; `serve_stage` does the rest."""

    name: str
    metrics: ServiceMetrics
    readiness: Readiness  # what must be reachable for the stage to work (store, bus)

    async def start(self) -> dict[str, str]:
        """Connect and listen; returns endpoint name -> address."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set (or return early when the work is done)."""
        ...

    async def stop(self) -> None:
        """Drain: finish or hand back what is in flight, then release resources."""
        ...

    def counters(self) -> dict[str, Any]:
        """Counters for /v1/counters and status lines."""
        ...


class ReadyState(BaseModel):
    """The body of /readyz: the lifecycle state and, when not ready, why not (one line)."""

    state: State
    reason: str | None = None


def admin_app(stage: Stage, lifecycle: Lifecycle) -> Any:
    """The admin HTTP app: /healthz, /readyz, /metrics, /v1/counters."""
    app = service_app(
        f"meterseal {stage.name}",
        f"Admin endpoint of the {stage.name} service.",
        Counter(),  # refusals of the admin port itself
        stage.counters,
    )

    @app.get(
        "/readyz",
        summary="Readiness",
        dependencies=[access(PUBLIC)],
        responses={503: {"model": ReadyState, "description": "Not ready, with the reason"}},
    )
    async def readyz(response: Response) -> ReadyState:
        state = lifecycle.state
        reason = f"the service is {state.value}" if state is not State.READY else None
        reason = reason or await stage.readiness.reason()
        if reason is not None:
            response.status_code = 503
        return ReadyState(state=state, reason=reason)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=[access(PUBLIC)],
    )
    async def metrics() -> Response:
        return Response(stage.metrics.exposition(), media_type=CONTENT_TYPE)

    return app


async def serve_stage(
    stage: Stage,
    *,
    admin: str | None = "127.0.0.1:0",
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
    stop: asyncio.Event | None = None,
    admin_tls: ssl.SSLContext | None = None,
) -> Lifecycle:
    """Run `stage` through its lifecycle in the current event loop until stopped."""
    lifecycle = Lifecycle()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    server = None
    lifecycle.on(Event.START)
    try:
        if admin is not None:
            server = HttpServer(admin_app(stage, lifecycle), tls=admin_tls)
            host, port = parse_address(admin, 0)
            port = await server.start(host, port)
            scheme = "http" if admin_tls is None else "https"
            announce(f"listening admin {scheme}://{format_address(host, port)}")
        for name, address in (await stage.start()).items():
            announce(f"listening {name} {address}")
        lifecycle.on(Event.STARTED)
        announce(f"ready {stage.name}")
        await stage.run(stop)
    except BaseException:
        lifecycle.on(Event.FAIL)
        with contextlib.suppress(Exception):
            await stage.stop()
        raise
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
    lifecycle.on(Event.STOP)
    await stage.stop()
    lifecycle.on(Event.DRAINED)
    return lifecycle


def run_main(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run a service's `main()` in a fresh event loop and map its end to an exit code."""
    try:
        asyncio.run(main())
    except MetersealError as exc:
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 0
    except Exception:
        log.exception("service failed")
        return 1
    return 0
