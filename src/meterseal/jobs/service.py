"""A served Manager: its jobs run one at a time in a thread, on one Dask engine.

`JobRunner` takes the oldest job that is `submitted`, or `running` because a Manager stopped
while it ran (resumed first, as `meterseal jobs run` would), and runs it to its end on the
engine it opened at start; a submission wakes it. A job another Manager holds the lease of
(it runs it now) is left to that Manager. Stopping halts the job at its next check
and leaves it `running`, so the next Manager resumes it. `JobsStage` is the runner with the
Manager's HTTP API as one runtime `Stage` (`meterseal jobs serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from meterseal.errors import MetersealError
from meterseal.jobs.control import Decision
from meterseal.jobs.engine import Engine
from meterseal.jobs.lifecycle import JobState
from meterseal.jobs.manager import Manager
from meterseal.jobs.metrics import JobMetrics
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobLeased, JobRecord
from meterseal.runtime.http import HttpAppService

log = logging.getLogger(__name__)
RUNNABLE = (JobState.RUNNING, JobState.SUBMITTED)  # a left-running job is resumed first


class JobRunner:
    """Runs `manager`'s runnable jobs in a thread on the engine `engine()` opens."""

    def __init__(
        self,
        manager: Manager,
        engine: Callable[[], AbstractContextManager[Engine]],
        metrics: JobMetrics | None = None,
        poll: float = 5.0,
    ) -> None:
        self.manager = manager
        self.engine = engine
        self.metrics = metrics or JobMetrics()
        self.poll = poll  # seconds between looks at the records without a wake-up
        self.ran: list[str] = []  # job ids this runner took, in order
        self.error: BaseException | None = None  # why the thread ended early, if it did
        self._skipped: set[str] = set()  # jobs this runner must not take again
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jobs-runner", daemon=True)

    def start(self) -> None:
        """Open the engine and begin taking jobs."""
        self._thread.start()

    def wake(self) -> None:
        """Look at the records now (a job was submitted)."""
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Halt the current job at its next check (it stays running), close the engine."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the runner still takes jobs."""
        return self._thread.is_alive()

    def _next(self) -> JobRecord | None:
        for state in RUNNABLE:
            for record in self.manager.jobs():
                if (
                    record.state is state
                    and record.job_id not in self._skipped
                    and not self.manager.book.held(record.job_id)  # another Manager runs it
                ):
                    return record
        return None

    def _loop(self) -> None:
        try:
            with self.engine() as engine:
                while not self._stop.is_set():
                    record = self._next()
                    if record is None:
                        self._wake.wait(self.poll)
                        self._wake.clear()
                        continue
                    self._run(record.job_id, engine)
        except BaseException as exc:  # the engine would not start: say so at /readyz
            self.error = exc
            log.exception("the jobs runner stopped")

    def _run(self, job_id: str, engine: Engine) -> None:
        self.ran.append(job_id)
        try:
            self.manager.run(job_id, engine, self._observe, halt=self._stop.is_set)
        except JobLeased as exc:  # taken by another Manager since `_next` looked: not ours
            log.info("job %s: %s", job_id, exc)
            return
        except MetersealError as exc:  # recorded as failed, or refused (cancelled meanwhile)
            log.warning("job %s: %s", job_id, exc)
        except Exception:  # recorded as failed by the Manager
            log.exception("job %s failed", job_id)
        if self.manager.status(job_id).state in RUNNABLE and not self._stop.is_set():
            self._skipped.add(job_id)  # not ended, not halted: never loop on it

    def _observe(self, record: JobRecord, snapshot: Snapshot, decision: Decision | None) -> None:
        self.metrics.observe(record.job_id, snapshot, decision)


class JobsStage:
    """The Manager's HTTP API and its job runner, as one runtime Stage."""

    def __init__(self, http: HttpAppService, runner: JobRunner) -> None:
        self.http = http
        self.runner = runner
        self.name = http.name
        self.metrics = http.metrics
        self.readiness = http.readiness
        self.readiness.add(self._runner_ready)

    def _runner_ready(self) -> str | None:
        if self.runner.error is not None:
            return f"the job runner stopped: {type(self.runner.error).__name__}"
        return None

    async def start(self) -> dict[str, str]:
        """Start the runner (it opens the engine), then listen."""
        self.runner.start()
        return await self.http.start()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until stopped."""
        await stop.wait()

    async def stop(self) -> None:
        """Stop taking requests, halt the running job (left running for a resume)."""
        with contextlib.suppress(Exception):
            await self.http.stop()
        await asyncio.to_thread(self.runner.stop)

    def counters(self) -> dict[str, Any]:
        """The API's counters and the jobs this Manager ran."""
        return {**self.http.counters(), "jobs_taken": len(self.runner.ran)}
