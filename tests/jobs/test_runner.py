"""Chunks on Dask: results handed over once, the controller scaling the cluster, retries."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meterseal.jobs.attest import declare_attested
from meterseal.jobs.control import Limits, ThresholdController
from meterseal.jobs.engine import Engine, local_engine
from meterseal.jobs.monitor import Monitor
from meterseal.jobs.runner import _result, chunked, run_chunks


def total(chunk: Sequence[int]) -> int:
    """A task: the sum of a chunk."""
    return sum(chunk)


def fake_clock(step: float) -> Callable[[], float]:
    """A clock that moves `step` seconds each time it is read."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


def test_each_chunk_is_handed_over_once(engine: Engine) -> None:
    chunks = chunked(list(range(20)), 3)
    got: dict[int, list[int]] = {}
    monitor = Monitor(20, 1e9, clock=fake_clock(0.0))
    run = run_chunks(
        engine,
        total,
        chunks,
        lambda i, r: got.setdefault(i, []).append(r),
        monitor=monitor,
        key="once",
        finished={0},
    )
    assert got == {i: [sum(c)] for i, c in enumerate(chunks) if i != 0}
    assert monitor.done == 20
    assert not run.cancelled
    last, decision = run.checks[-1]
    assert (last.observation.progress, decision) == (1.0, None)


def test_a_late_job_gets_more_workers(engine: Engine) -> None:
    # Compressed time: every clock read is 100 s, the deadline 10 s: always late.
    monitor = Monitor(12, 10.0, clock=fake_clock(100.0))
    control = ThresholdController(up=0.0, actuation_size=1, limits=Limits(1, 2))
    run = run_chunks(
        engine,
        total,
        chunked(list(range(12)), 1),
        lambda i, r: None,
        monitor=monitor,
        control=control,
        key="late",
    )
    assert run.actuations >= 1
    first = next(d for _, d in run.checks if d is not None and d.acted)
    assert (first.workers, first.error < 0) == (2, True)
    engine.client.wait_for_workers(2)
    assert engine.actuator.workers() == 2


def test_a_cancelled_run_stops(engine: Engine) -> None:
    run = run_chunks(
        engine,
        total,
        chunked(list(range(6)), 1),
        lambda i, r: None,
        monitor=Monitor(6, 1e9, clock=fake_clock(0.0)),
        key="stop",
        stop=lambda: True,
    )
    assert run.cancelled
    assert run.checks == []


def test_a_resumed_run_names_its_tasks_anew(engine: Engine, monkeypatch: Any) -> None:
    # A halted run's cancel reaches the scheduler late: had the resume reused its task
    # names, that cancel would cancel the resume's tasks too (seen in CI).
    names: list[list[str]] = []
    submit = engine.client.submit

    def recorded(*args: Any, **kwargs: Any) -> Any:
        names[-1].append(kwargs["key"])
        return submit(*args, **kwargs)

    monkeypatch.setattr(engine.client, "submit", recorded)
    got: dict[int, int] = {}
    for stop in (lambda: True, lambda: False):
        names.append([])
        run_chunks(
            engine,
            total,
            chunked(list(range(4)), 1),
            got.__setitem__,
            monitor=Monitor(4, 1e9, clock=fake_clock(0.0)),
            key="resumed",
            stop=stop,
        )
    halted, resumed = names
    assert len(halted) == len(resumed) == 4
    assert not set(halted) & set(resumed)
    assert got == {0: 0, 1: 1, 2: 2, 3: 3}


def dies_once(marker: str, chunk: Sequence[int]) -> int:
    """A task whose first attempt kills its worker process mid-task."""
    if chunk[0] == 3 and not Path(marker).exists():
        Path(marker).write_text("killed")
        os._exit(1)
    return sum(chunk)


def test_a_job_survives_a_worker_killed_mid_task(tmp_path: Path) -> None:
    import functools

    chunks = chunked(list(range(8)), 1)
    got: dict[int, list[int]] = {}
    task = functools.partial(dies_once, str(tmp_path / "killed"))
    with local_engine(2, processes=True) as engine:
        run_chunks(
            engine,
            task,
            chunks,
            lambda i, r: got.setdefault(i, []).append(r),
            monitor=Monitor(8, 1e9, clock=fake_clock(0.0)),
            key="kill",
        )
    assert (tmp_path / "killed").exists()  # a worker did die
    assert got == {i: [i] for i in range(8)}  # every result once, the killed one retried


class Overlap:
    """How many tasks ran at once, at most (tasks in this process's worker threads)."""

    lock = threading.Lock()
    now = 0
    most = 0


def held(chunk: Sequence[int]) -> int:
    """A task that stays a moment, counting the tasks running beside it."""
    with Overlap.lock:
        Overlap.now += 1
        Overlap.most = max(Overlap.most, Overlap.now)
    time.sleep(0.05)
    with Overlap.lock:
        Overlap.now -= 1
    return sum(chunk)


def test_trusted_memory_is_never_over_committed() -> None:
    # One worker declaring 100 MiB with 4 threads; each task needs 60: one at a time.
    Overlap.most = 0
    snapshots = []
    with local_engine(1, processes=False, threads_per_worker=4, trusted_memory=100) as engine:
        run_chunks(
            engine, held, chunked(list(range(8)), 1), lambda i, r: None,
            monitor=Monitor(8, 1e9, clock=fake_clock(0.0)), key="epc", interval=0.01,
            trusted_memory=60, on_check=lambda s, d: snapshots.append(s),
        )  # fmt: skip
    assert Overlap.most == 1
    assert {s.trusted_capacity for s in snapshots} == {100.0}
    assert {s.trusted_used for s in snapshots} <= {0.0, 60.0}


class LostFuture:
    """A Dask future whose worker died holding its result: `wait` counts it done."""

    status = "lost"

    def result(self) -> int:
        """What Dask's recomputation gives (Future.result waits for it)."""
        return 7

    def exception(self) -> None:
        """A lost future has no exception."""
        return None


def test_a_result_lost_with_its_worker_is_waited_for_not_failed() -> None:
    # The race test_a_job_survives_a_worker_killed_mid_task met at random: the killed worker
    # held a finished, not yet fetched result; the runner must not call the job failed.
    assert _result(LostFuture(), "chunk 2 of kill") == 7


async def _attest_now(dask_worker: Any) -> None:
    """On a worker: declare ATTESTED, as jobs.attest's plugin does once the CAS released."""
    await declare_attested(dask_worker, 1.0)


def test_an_attested_run_waits_the_grace_for_a_worker_that_attests_late() -> None:
    # A remote engine's only worker registered, then attests (it joined, or restarted):
    # checks in that window saw no worker attested, and the first one failed the job.
    with local_engine(1, processes=False, attested=True) as workers:
        engine = dataclasses.replace(workers, attest_grace=30.0)
        now = [0.0]

        def checked(*_: object) -> None:
            now[0] += 10.0  # a check every 10 s of the run's clock
            if now[0] == 20.0:  # two checks with none attested, then the worker attests
                engine.client.run(_attest_now)

        got: dict[int, int] = {}
        run_chunks(
            engine,
            total,
            chunked(list(range(6)), 2),
            got.__setitem__,
            monitor=Monitor(6, 1e9, clock=fake_clock(0.0)),
            key="late-attest",
            interval=0.1,
            on_check=checked,
            clock=lambda: now[0],
        )
    assert got == {0: 1, 1: 5, 2: 9}
