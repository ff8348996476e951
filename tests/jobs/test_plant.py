"""Deadlines in compressed time: the controllers meet one that a fixed worker count misses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import ConfigurationError
from meterseal.jobs.control import Limits, Mode, controller
from meterseal.jobs.plant import JobModel, simulate

# 120 tasks of 2 s: one worker needs 240 s, the deadline is 100 s, a new worker starts in 5 s.
JOB = JobModel(tasks=120, task_seconds=2.0, deadline=100.0, check_interval=2.0, startup_seconds=5.0)


def test_a_fixed_single_worker_misses_the_deadline() -> None:
    run = simulate(controller(Mode.THRESHOLD, limits=Limits(1, 1)), JOB)
    assert not run.on_time
    assert run.finished_at == pytest.approx(240.0)
    assert run.actuations == 0


@pytest.mark.parametrize(
    ("mode", "settings"),
    [(Mode.THRESHOLD, {"down": 0.1}), (Mode.PID, {"kp": 10.0}), (Mode.QUEUE, {})],
)
def test_a_controlled_job_meets_the_deadline_the_fixed_one_misses(
    mode: Mode, settings: dict[str, float]
) -> None:
    # Threshold: remove workers only when 10% ahead (with down=0 it hovers at the edge).
    run = simulate(controller(mode, limits=Limits(1, 8), **settings), JOB)
    assert run.on_time, run
    assert run.actuations >= 1


def test_the_paper_s_tolerances_stay_near_the_deadline_and_act_less_as_they_grow() -> None:
    # Tracking progress against elapsed time aims at the deadline itself: a worker's start-up
    # can make it a little late, never as late as the fixed worker (140%).
    runs = [
        simulate(controller(Mode.THRESHOLD, tolerance=t, limits=Limits(1, 8)), JOB)
        for t in (0.0, 0.05, 0.10)
    ]
    assert all(run.lateness <= 0.10 * JOB.deadline for run in runs), runs
    acted = [run.actuations for run in runs]
    assert acted == sorted(acted, reverse=True)
    assert acted[-1] >= 1


@given(
    tasks=st.integers(1, 200),
    task_seconds=st.floats(0.1, 5.0),
    workers=st.integers(1, 6),
)
def test_a_fixed_count_finishes_when_the_work_says(
    tasks: int, task_seconds: float, workers: int
) -> None:
    job = JobModel(tasks, task_seconds, deadline=1e9, start_workers=workers)
    run = simulate(controller(Mode.THRESHOLD, limits=Limits(workers, workers)), job)
    assert run.finished_at == pytest.approx(tasks * task_seconds / workers)
    assert run.worker_seconds == pytest.approx(tasks * task_seconds)


def test_a_model_that_makes_no_sense_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        JobModel(10, 0.0, 10.0)
    with pytest.raises(ConfigurationError):
        JobModel(10, 1.0, 10.0, start_workers=0)
