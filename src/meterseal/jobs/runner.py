"""Run a job's chunks on the Dask engine under the Monitor and the Controller.

Each chunk is one Dask task (retried by Dask if it fails or its worker dies; submitted again
if the scheduler drops it, as it may when the Controller retires a worker). A chunk's
result is handed to `on_result` once, when its task first completes: tasks have no side
effects, the runner alone writes, so a retried task cannot write twice. Every check (after a
chunk completes, or `interval` seconds without one) the Monitor observes the job and the
Controller may scale the cluster through the engine's actuator.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meterseal.errors import MetersealError
from meterseal.jobs.control import Controller, Decision
from meterseal.jobs.engine import ATTESTED, TRUSTED_MEMORY, Engine
from meterseal.jobs.monitor import Monitor, Snapshot

T = TypeVar("T")


class JobFailed(MetersealError):
    """A chunk failed on every attempt Dask made; the job stops."""


@dataclass
class Run:
    """What a run did: each check's snapshot and decision, and whether it was cancelled."""

    checks: list[tuple[Snapshot, Decision | None]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def actuations(self) -> int:
        """How many checks changed the worker count."""
        return sum(1 for _, d in self.checks if d is not None and d.acted)


def _never() -> bool:
    return False


def run_chunks(
    engine: Engine,
    task: Callable[[Sequence[T]], Any],
    chunks: Sequence[Sequence[T]],
    on_result: Callable[[int, Any], None],
    *,
    monitor: Monitor,
    control: Controller | None = None,
    key: str,
    interval: float = 5.0,
    retries: int = 3,
    finished: Collection[int] = (),
    stop: Callable[[], bool] = _never,
    on_check: Callable[[Snapshot, Decision | None], None] | None = None,
    trusted_memory: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Run:
    """Run `task` on every chunk not `finished` yet; `on_result(index, result)` once each.

    `trusted_memory` (MiB) is what each task needs of the workers' declared trusted memory.
    On an attested engine the run fails once its workers have had none attested for longer
    than `engine.attest_grace` seconds of `clock`.
    """
    from distributed import TimeoutError as DaskTimeout
    from distributed import wait

    client = engine.client
    need: dict[str, float] = {}
    if trusted_memory is not None:
        need[TRUSTED_MEMORY] = trusted_memory
    if engine.attested:
        need[ATTESTED] = 1.0  # only a worker the CAS released the job's keys to
    monitor.record(sum(len(chunks[i]) for i in finished))
    attempts: dict[int, int] = {}
    # Task names are unique per run: a halted run's cancel reaches the scheduler late, and
    # would cancel a resumed run's task of the same name with it.
    run_key = f"{key}-{secrets.token_hex(3)}"

    def submit(i: int) -> Any:
        attempts[i] = attempts.get(i, 0) + 1
        name = f"{run_key}-{i}-{attempts[i]}"
        return client.submit(
            task, chunks[i], key=name, retries=retries, pure=False, resources=need or None
        )

    pending = {submit(i): i for i in range(len(chunks)) if i not in finished}
    run = Run()
    unattested = _Unattested(engine, clock)
    while pending:
        if stop():
            client.cancel(list(pending))  # type: ignore[no-untyped-call]
            run.cancelled = True
            break
        try:
            done, _ = wait(  # type: ignore[no-untyped-call]
                list(pending), timeout=interval, return_when="FIRST_COMPLETED"
            )
        except DaskTimeout:
            done = set()
        if engine.attested and not done:
            unattested.check()
        for future in done:
            index = pending.pop(future)
            if future.status == "cancelled" and attempts[index] <= retries:
                pending[submit(index)] = index  # dropped by the scheduler (a retired worker)
                continue
            on_result(index, _result(future, f"chunk {index} of {key}"))
            monitor.record(len(chunks[index]))
        run.checks.append(_check(engine, monitor, control, len(pending)))
        if on_check is not None:
            on_check(*run.checks[-1])
    return run


def _result(future: Any, what: str) -> Any:
    """A done future's result. `wait` counts a "lost" future as done: its worker died holding
    the result, and Dask computes it again (the client still wants it); wait for that."""
    status = future.status
    if status not in ("finished", "lost"):
        raise JobFailed(f"{what} {status}: {future.exception()!r}")
    try:
        return future.result()
    except Exception as exc:  # the recomputation failed on every attempt
        raise JobFailed(f"{what} failed: {exc!r}") from exc


class _Unattested:
    """Fails an attested run whose workers have had none attested for longer than the grace.

    Not at once: a worker that joins or restarts registers before it attests, and a check in
    that window, with it the only worker, would fail a job about to run.
    """

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock
        self.since: float | None = None  # the first check that saw workers, none attested

    def check(self) -> None:
        """Raise JobFailed if no worker has attested for longer than the engine's grace."""
        workers = self.engine.client.scheduler_info()["workers"].values()
        if not workers or any(ATTESTED in worker.get("resources", {}) for worker in workers):
            self.since = None  # no worker to wait for, or one the tasks can run on
            return
        now = self.clock()
        if self.since is None:
            self.since = now
        if now - self.since <= self.engine.attest_grace:
            return
        raise JobFailed(
            f"no worker attested to the CAS in {self.engine.attest_grace:g} s, so no task of "
            "the job can run: the CAS releases the job's key only once it holds it and a rule "
            "for this code (docs/jobs.md, trusted workers: `meterseal cas secrets import "
            "--name jobs/metrology-key …` and `meterseal cas policy add --stage jobs-worker "
            "…`), and only when it answers"
        )


def _check(
    engine: Engine, monitor: Monitor, control: Controller | None, queued: int
) -> tuple[Snapshot, Decision | None]:
    snapshot = monitor.check(
        engine.actuator.workers(), queued, engine.trusted_memory(), engine.trusted_workers()
    )
    if control is None or queued == 0:
        return snapshot, None
    decision = control.decide(snapshot.observation)
    if decision.acted:
        engine.actuator.scale(decision.workers)
    return snapshot, decision


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` in consecutive chunks of `size` (the last may be shorter)."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
