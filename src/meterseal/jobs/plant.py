"""A job as a controller sees it, in compressed time (sans-IO): tasks, workers, a deadline.

`simulate` runs a controller against a model of a batch job: each productive worker finishes
one task every `task_seconds`, a worker the controller adds becomes productive only
`startup_seconds` later (as a Dask worker that must start and fetch its keys), and the
controller decides at every check interval. No clock is read: time is the loop's counter, so a
run is exactly reproducible and a test can ask whether a deadline is met without waiting for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from meterseal.errors import ConfigurationError
from meterseal.jobs.control import Controller, Decision, Observation


@dataclass(frozen=True, slots=True)
class JobModel:
    """The job a simulation runs: how many tasks, how long one takes, when it is due."""

    tasks: int
    task_seconds: float
    deadline: float  # seconds from the job's start
    check_interval: float = 1.0
    startup_seconds: float = 0.0  # an added worker's time before its first task
    start_workers: int = 1

    def __post_init__(self) -> None:
        if self.tasks < 0 or self.task_seconds <= 0 or self.check_interval <= 0:
            raise ConfigurationError("need tasks >= 0, task_seconds > 0 and check_interval > 0")
        if self.deadline <= 0 or self.startup_seconds < 0 or self.start_workers < 1:
            raise ConfigurationError("need deadline > 0, startup >= 0 and start_workers >= 1")


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """What a simulated run did: when it finished, how it acted, what the workers cost."""

    finished_at: float
    deadline: float
    actuations: int
    worker_seconds: float
    decisions: tuple[Decision, ...]

    @property
    def on_time(self) -> bool:
        """Whether the last task finished by the deadline."""
        return self.finished_at <= self.deadline

    @property
    def lateness(self) -> float:
        """Seconds past the deadline (0 when on time)."""
        return max(0.0, self.finished_at - self.deadline)


def simulate(control: Controller, job: JobModel, *, horizon: float | None = None) -> SimulatedRun:
    """Run `control` on `job` in steps of the check interval until done (or the horizon)."""
    limit = horizon if horizon is not None else 100 * job.deadline
    ready: list[float] = [0.0] * job.start_workers  # when each worker starts working
    done, now, spent, acted = 0.0, 0.0, 0.0, 0
    decisions: list[Decision] = []
    step = job.check_interval
    while done < job.tasks and now < limit:
        rate = 1.0 / job.task_seconds
        working = sum(max(0.0, min(step, now + step - r)) for r in ready)
        if done + working * rate >= job.tasks:  # finishes inside this step: when exactly
            end = _finish_time(ready, now, (job.tasks - done) / rate)
            spent += len(ready) * (end - now)
            done, now = job.tasks, end
            break
        done += working * rate
        now += step
        spent += len(ready) * step
        seen = Observation(
            math.floor(done), job.tasks, now, job.deadline, len(ready), job.tasks - math.floor(done)
        )
        decision = control.decide(seen)
        decisions.append(decision)
        if decision.acted:
            acted += 1
        ready = _resize(ready, decision.workers, now + job.startup_seconds)
    return SimulatedRun(now, job.deadline, acted, spent, tuple(decisions))


def _resize(ready: list[float], workers: int, start: float) -> list[float]:
    """The workers after a decision: new ones productive from `start`, the newest removed first."""
    if workers > len(ready):
        return ready + [start] * (workers - len(ready))
    return sorted(ready)[:workers]


def _finish_time(ready: list[float], now: float, work: float) -> float:
    """When `work` worker-seconds are done from `now`, workers joining at their ready times."""
    starts = sorted(max(now, r) for r in ready)
    t, busy = now, 0
    for i, start in enumerate(starts):
        if busy and work <= busy * (start - t):
            return t + work / busy
        work -= busy * (start - t)
        t, busy = start, i + 1
    return t + work / busy
