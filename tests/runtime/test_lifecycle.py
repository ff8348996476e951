"""The service lifecycle: its table, the admin endpoint, exit codes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meterseal.errors import ConfigurationError
from meterseal.runtime.lifecycle import (
    TRANSITIONS,
    Event,
    Lifecycle,
    LifecycleError,
    State,
    run_main,
    serve_stage,
)
from meterseal.runtime.metrics import ServiceMetrics, parse_exposition
from meterseal.runtime.readiness import Readiness


def test_every_state_but_the_ends_can_fail_and_the_ends_are_final() -> None:
    for state in State:
        final = state in (State.STOPPED, State.FAILED)
        assert (state in TRANSITIONS.sources()) is not final
        if state is not State.CREATED and not final:
            assert TRANSITIONS[(state, Event.FAIL)] is State.FAILED


def test_an_event_the_table_does_not_allow_is_refused() -> None:
    lifecycle = Lifecycle()
    with pytest.raises(LifecycleError, match="service cannot stop when created"):
        lifecycle.on(Event.STOP)
    assert lifecycle.on(Event.START) is State.STARTING
    assert lifecycle.on(Event.STARTED) is State.READY
    with pytest.raises(LifecycleError):
        lifecycle.on(Event.START)


class Counting:
    """A stage that counts to three, then waits to be stopped."""

    name = "counting"

    def __init__(self, fail_in_run: bool = False) -> None:
        self.metrics = ServiceMetrics(self.name)
        self.outage: str | None = None  # what a readiness check reports, when set
        self.readiness = Readiness(lambda: self.outage, every=0.0)
        self.seen = {"ticks": 0}
        self.metrics.bridge("meterseal_ticks", "Ticks", "kind", lambda: self.seen)
        self.stopped = False
        self.fail_in_run = fail_in_run

    async def start(self) -> dict[str, str]:
        return {"nothing": "here"}

    async def run(self, stop: asyncio.Event) -> None:
        for _ in range(3):
            self.seen["ticks"] += 1
            self.metrics.acquisition.observe(0.01)
        if self.fail_in_run:
            raise ConfigurationError("the stage broke")
        await stop.wait()

    async def stop(self) -> None:
        self.stopped = True

    def counters(self) -> dict[str, Any]:
        return dict(self.seen)


def test_admin_endpoint_serves_health_readiness_metrics_and_counters() -> None:
    lines: list[str] = []

    async def scenario() -> None:
        stage, stop = Counting(), asyncio.Event()
        task = asyncio.create_task(serve_stage(stage, announce=lines.append, stop=stop))
        while not any(line.startswith("ready ") for line in lines):
            await asyncio.sleep(0.01)
        admin = next(line.split()[2] for line in lines if line.startswith("listening admin"))
        async with httpx.AsyncClient(base_url=admin) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"state": "ready", "reason": None})
            stage.outage = "cannot reach the store sqlite:///x.db: gone"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"state": "ready", "reason": stage.outage}
            stage.outage = None
            assert (await client.get("/readyz")).status_code == 200
            samples = parse_exposition((await client.get("/metrics")).text)
            assert samples["meterseal_ticks_total{kind=ticks}"] == 3
            assert samples["meterseal_acquisition_seconds_count"] == 3
            assert (await client.get("/v1/counters")).json() == {"ticks": 3}
        stop.set()
        lifecycle = await task
        assert lifecycle.state is State.STOPPED
        assert stage.stopped

    asyncio.run(scenario())
    assert "listening nothing here" in lines
    assert lines[-1] == "ready counting"


def test_a_meterseal_error_exits_2_and_the_stage_is_stopped() -> None:
    stage = Counting(fail_in_run=True)

    async def main() -> None:
        await serve_stage(stage, admin=None, announce=lambda _: None)

    assert run_main(main) == 2
    assert stage.stopped


def test_an_unexpected_error_exits_1() -> None:
    async def main() -> None:
        raise RuntimeError("bug")

    assert run_main(main) == 1


def test_readiness_checks_run_once_per_interval_and_a_failing_check_is_a_reason() -> None:
    calls = {"n": 0}

    def counted() -> str | None:
        calls["n"] += 1
        return None

    def broken() -> str | None:
        raise RuntimeError("bug")

    async def scenario() -> None:
        cached = Readiness(counted, every=3600.0)
        assert [await cached.reason() for _ in range(5)] == [None] * 5
        assert calls["n"] == 1  # one probe answers every scrape within the interval
        assert await Readiness(counted, broken, every=0.0).reason() == (
            "readiness check failed: RuntimeError"
        )
        assert await Readiness().reason() is None

    asyncio.run(scenario())
