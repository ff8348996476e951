"""The Monitor of Asperathos, sans-IO: a job's progress against its deadline, every check.

It counts tasks done; at each check the runner tells it the workers and the queue, and it
answers with the `Observation` the Controller takes plus the rate: tasks per second since
the job started. Time comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meterseal.jobs.control import Observation


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One check: what the Controller sees, and the job's rate so far."""

    observation: Observation
    tasks_per_second: float
    trusted_used: float = 0.0  # MiB of trusted memory the running tasks hold
    trusted_capacity: float = 0.0  # MiB the workers declare
    # MiB each trusted worker measures (simulated enclave: its process's resident memory)
    trusted_measured: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The figures a job's status and its metrics show."""
        seen = self.observation
        return {
            "done": seen.done,
            "total": seen.total,
            "progress": seen.progress,
            "expected": seen.expected,
            "error": seen.error,
            "workers": seen.workers,
            "queued": seen.queued,
            "elapsed": seen.elapsed,
            "tasks_per_second": self.tasks_per_second,
            "trusted_used": self.trusted_used,
            "trusted_capacity": self.trusted_capacity,
            "trusted_measured_mib": dict(self.trusted_measured),
        }


@dataclass
class Monitor:
    """Progress of `total` tasks that should be done `deadline` seconds after the start."""

    total: int
    deadline: float
    clock: Callable[[], float]
    done: int = 0
    started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def record(self, tasks: int) -> None:
        """Count `tasks` more done."""
        self.done += tasks

    def check(
        self,
        workers: int,
        queued: int,
        trusted: tuple[float, float] = (0.0, 0.0),
        measured: dict[str, float] | None = None,
    ) -> Snapshot:
        """The observation now: `workers`, `queued` tasks, trusted memory (held, declared)
        and each trusted worker's measured use (MiB by worker)."""
        elapsed = max(0.0, self.clock() - self.started)
        seen = Observation(self.done, self.total, elapsed, self.deadline, workers, queued)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return Snapshot(seen, rate, *trusted, tuple(sorted((measured or {}).items())))
