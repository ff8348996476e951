"""The Controller of Asperathos, sans-IO: from one observation of a job to a worker count.

Asperathos (ufcg-lsd/asperathos-*) measures a job's error as its progress minus the time
it has used of its deadline (`progress_error`): negative when the job is late. Its default
mode adds `actuation_size` workers when the job is later than the up threshold and removes
as many when it is ahead by more than the down threshold (`ThresholdController`); its PID
mode sets new = current - Kp·e - Kd·Δe - Ki·Σe, rounded and clamped (`PidController`).
KEDA instead scales on the queue alone: ceil(queued / tasks per worker) (`QueueController`).

Every mode first applies a tolerance: how late (or ahead) a job may be before anything is
done (for the queue mode, as Kubernetes' HPA, the relative change it ignores). A
controller's own state (the PID's sums) moves the same whatever the tolerance, and the
worker count it starts from is the one observed, so a run is reproducible from its trace
of observations and a smaller tolerance never acts less often on the same trace.
Time is a parameter: the caller measures `elapsed` with its own clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from meterseal.errors import ConfigurationError


class Mode(enum.StrEnum):
    """The controller modes: Asperathos' two and KEDA's queue length."""

    THRESHOLD = "threshold"
    PID = "pid"
    QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class Observation:
    """What the Monitor saw at one check: tasks done of total, seconds used, workers, queue."""

    done: int
    total: int
    elapsed: float
    deadline: float  # seconds the job may take from its start
    workers: int
    queued: int = 0

    @property
    def progress(self) -> float:
        """The share of tasks done, 0..1 (an empty job is done)."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def expected(self) -> float:
        """The share of the deadline used, 0..1: where progress should be by now."""
        return 1.0 if self.deadline <= 0 else min(1.0, max(0.0, self.elapsed / self.deadline))

    @property
    def error(self) -> float:
        """Asperathos' error: progress minus expected progress (negative means late)."""
        return progress_error(self.done, self.total, self.elapsed, self.deadline)


def progress_error(done: int, total: int, elapsed: float, deadline: float) -> float:
    """Progress minus elapsed/expected time, both as shares of 1 (negative: the job is late)."""
    progress = 1.0 if total <= 0 else min(1.0, done / total)
    expected = 1.0 if deadline <= 0 else min(1.0, max(0.0, elapsed / deadline))
    return progress - expected


@dataclass(frozen=True, slots=True)
class Limits:
    """The worker counts a controller may choose between (inclusive)."""

    min_workers: int = 1
    max_workers: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ConfigurationError(
                f"worker limits {self.min_workers}..{self.max_workers}: need 0 <= min <= max"
            )

    def clamp(self, workers: int) -> int:
        """`workers` brought within the limits."""
        return max(self.min_workers, min(self.max_workers, workers))


@dataclass(frozen=True, slots=True)
class Decision:
    """A controller's answer to one observation: the worker count and whether it changed."""

    workers: int
    error: float
    acted: bool
    reason: str


class Controller(Protocol):
    """What the Manager drives: one decision per observation, every check interval."""

    mode: Mode
    tolerance: float
    limits: Limits

    def decide(self, seen: Observation) -> Decision:
        """The worker count after this observation."""
        ...


def _decision(seen: Observation, wanted: int, limits: Limits, reason: str) -> Decision:
    workers = limits.clamp(wanted)
    if workers == seen.workers:
        return Decision(workers, seen.error, False, f"{reason}; stays at {workers}")
    return Decision(workers, seen.error, True, f"{reason}; {seen.workers} -> {workers}")


def _check_tolerance(tolerance: float) -> None:
    if not 0.0 <= tolerance < 1.0:
        raise ConfigurationError(f"tolerance {tolerance}: need 0 <= tolerance < 1")


@dataclass
class ThresholdController:
    """Asperathos' default mode: ± actuation_size workers beyond the up or down threshold."""

    up: float = 0.0  # act when the job is later than this (error < -up)
    down: float = 0.0  # act when the job is ahead by more than this (error > down)
    actuation_size: int = 1
    tolerance: float = 0.0
    limits: Limits = Limits()
    mode: Mode = field(default=Mode.THRESHOLD, init=False)

    def __post_init__(self) -> None:
        _check_tolerance(self.tolerance)
        if self.up < 0 or self.down < 0 or self.actuation_size < 1:
            raise ConfigurationError("thresholds must be >= 0 and actuation_size >= 1")

    def decide(self, seen: Observation) -> Decision:
        """Add workers when late past max(up, tolerance), remove when ahead past max(down, ...)."""
        e = seen.error
        if e < -max(self.up, self.tolerance):
            return _decision(seen, seen.workers + self.actuation_size, self.limits, "late")
        if e > max(self.down, self.tolerance) and seen.done < seen.total:
            return _decision(seen, seen.workers - self.actuation_size, self.limits, "ahead")
        return _decision(seen, seen.workers, self.limits, "within tolerance")


@dataclass
class PidController:
    """Asperathos' PID mode: new = current - Kp·e - Kd·Δe - Ki·Σe, rounded and clamped."""

    kp: float = 10.0
    ki: float = 0.0
    kd: float = 0.0
    tolerance: float = 0.0
    limits: Limits = Limits()
    mode: Mode = field(default=Mode.PID, init=False)
    integral: float = 0.0
    previous: float | None = None

    def __post_init__(self) -> None:
        _check_tolerance(self.tolerance)

    def decide(self, seen: Observation) -> Decision:
        """One PID step; the sums move every check, the workers only beyond the tolerance."""
        e = seen.error
        delta = 0.0 if self.previous is None else e - self.previous
        self.integral += e
        self.previous = e
        if abs(e) <= self.tolerance:
            return _decision(seen, seen.workers, self.limits, "within tolerance")
        raw = seen.workers - self.kp * e - self.kd * delta - self.ki * self.integral
        return _decision(seen, round(raw), self.limits, f"pid output {raw:.2f}")


@dataclass
class QueueController:
    """KEDA's queue-length scaling: ceil(queued / tasks_per_worker), no deadline involved."""

    tasks_per_worker: int = 4
    tolerance: float = 0.0  # as the HPA's: relative changes this small are ignored
    limits: Limits = Limits()
    mode: Mode = field(default=Mode.QUEUE, init=False)

    def __post_init__(self) -> None:
        _check_tolerance(self.tolerance)
        if self.tasks_per_worker < 1:
            raise ConfigurationError("tasks_per_worker must be >= 1")

    def decide(self, seen: Observation) -> Decision:
        """Workers for the queue, unless the change is within the relative tolerance."""
        wanted = math.ceil(seen.queued / self.tasks_per_worker)
        if seen.workers > 0 and abs(wanted / seen.workers - 1.0) <= self.tolerance:
            return _decision(seen, seen.workers, self.limits, "within tolerance")
        return _decision(seen, wanted, self.limits, f"{seen.queued} queued")


def controller(
    mode: Mode | str, *, tolerance: float = 0.0, limits: Limits | None = None, **settings: float
) -> Controller:
    """A controller of `mode` with its settings (the Manager's job submission names them)."""
    bounds = limits or Limits()
    try:
        match Mode(mode):
            case Mode.THRESHOLD:
                size = int(settings.pop("actuation_size", 1))
                return ThresholdController(
                    actuation_size=size, tolerance=tolerance, limits=bounds, **settings
                )
            case Mode.PID:
                return PidController(tolerance=tolerance, limits=bounds, **settings)
            case Mode.QUEUE:
                per = int(settings.pop("tasks_per_worker", 4))
                return QueueController(per, tolerance=tolerance, limits=bounds, **settings)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"controller {mode!s}: {exc}") from exc


def replay(control: Controller, trace: Iterable[Observation]) -> list[Decision]:
    """The decisions `control` takes on a recorded trace of observations (reproducible)."""
    return [control.decide(seen) for seen in trace]
