"""The controller modes of Asperathos and KEDA, and the job lifecycle's one table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import ConfigurationError
from meterseal.jobs.control import (
    Limits,
    Mode,
    Observation,
    PidController,
    QueueController,
    ThresholdController,
    controller,
    progress_error,
    replay,
)
from meterseal.jobs.lifecycle import FINAL, JobEvent, JobRefused, JobState, JobStateError, step

LIMITS = Limits(1, 6)


def seen(
    done: int, elapsed: float, workers: int = 2, *, total: int = 100, queued: int = 0
) -> Observation:
    """An observation of a 100-task job with a 100-second deadline."""
    return Observation(done, total, elapsed, 100.0, workers, queued)


def test_error_is_progress_minus_elapsed_over_expected() -> None:
    assert progress_error(30, 100, 50.0, 100.0) == pytest.approx(-0.2)
    assert progress_error(80, 100, 50.0, 100.0) == pytest.approx(0.3)
    assert progress_error(100, 100, 500.0, 100.0) == 0.0  # past the deadline: expected is 1
    assert seen(10, 20.0).error == pytest.approx(-0.1)


def test_threshold_mode_adds_and_removes_actuation_size() -> None:
    control = ThresholdController(up=0.05, down=0.2, actuation_size=2, limits=LIMITS)
    late = control.decide(seen(30, 50.0))
    assert (late.workers, late.acted) == (4, True)
    assert control.decide(seen(48, 50.0)).acted is False  # 2% late: below the up threshold
    ahead = control.decide(seen(90, 50.0, workers=5))
    assert (ahead.workers, ahead.acted) == (3, True)
    assert control.decide(seen(0, 99.0, workers=6)).workers == 6  # clamped at the limit


def test_pid_mode_follows_the_asperathos_formula() -> None:
    control = PidController(kp=10.0, ki=1.0, kd=2.0, limits=Limits(0, 100))
    first = control.decide(seen(30, 50.0, workers=3))  # e=-0.2, Δe=0, Σe=-0.2
    assert first.workers == round(3 + 2.0 + 0.2)
    second = control.decide(seen(40, 70.0, workers=5))  # e=-0.3, Δe=-0.1, Σe=-0.5
    assert second.workers == round(5 + 3.0 + 0.2 + 0.5)


def test_queue_mode_scales_on_queue_length_alone() -> None:
    control = QueueController(tasks_per_worker=4, tolerance=0.1, limits=LIMITS)
    assert control.decide(seen(0, 0.0, workers=1, queued=17)).workers == 5
    assert control.decide(seen(0, 0.0, workers=5, queued=19)).acted is False
    assert control.decide(seen(0, 0.0, workers=3, queued=0)).workers == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        Limits(3, 2)
    with pytest.raises(ConfigurationError):
        controller("pid", tolerance=1.5)
    with pytest.raises(ConfigurationError):
        controller("pid", gain=3.0)
    with pytest.raises(ConfigurationError):
        controller("nonsense")
    assert controller("threshold", actuation_size=3).mode is Mode.THRESHOLD


observations = st.builds(
    Observation,
    done=st.integers(0, 200),
    total=st.integers(1, 200),
    elapsed=st.floats(0.0, 300.0),
    deadline=st.floats(1.0, 300.0),
    workers=st.integers(0, 20),
    queued=st.integers(0, 200),
)
modes = st.sampled_from(list(Mode))


@given(modes, st.lists(observations, max_size=20), st.floats(0.0, 0.9))
def test_decisions_stay_within_the_limits(mode: Mode, trace: list[Observation], tol: float) -> None:
    for decision in replay(controller(mode, tolerance=tol, limits=Limits(1, 7)), trace):
        assert 1 <= decision.workers <= 7


@given(st.sampled_from([Mode.THRESHOLD, Mode.PID]), st.lists(observations, max_size=20))
def test_zero_error_never_actuates(mode: Mode, trace: list[Observation]) -> None:
    # On time to the task (done/total == elapsed/deadline) and within the limits already.
    exact = [Observation(s.done, s.total, s.done * 10.0, s.total * 10.0, 3) for s in trace]
    for decision in replay(controller(mode, limits=Limits(1, 7)), exact):
        assert decision.error == pytest.approx(0.0, abs=1e-12)
        assert not decision.acted


@given(modes, st.lists(observations, max_size=30), st.floats(0.0, 0.9), st.floats(0.0, 0.9))
def test_less_tolerance_acts_at_least_as_often(
    mode: Mode, trace: list[Observation], a: float, b: float
) -> None:
    low, high = sorted((a, b))
    settings: dict[str, float] = {"kp": 7.0, "ki": 0.5, "kd": 1.0} if mode is Mode.PID else {}
    strict = replay(controller(mode, tolerance=low, limits=Limits(0, 20), **settings), trace)
    loose = replay(controller(mode, tolerance=high, limits=Limits(0, 20), **settings), trace)
    for tight, lax in zip(strict, loose, strict=True):
        assert tight.acted or not lax.acted  # every check the loose one acts on, the tight does
    assert sum(d.acted for d in strict) >= sum(d.acted for d in loose)


@given(modes, st.lists(observations, max_size=20))
def test_a_run_is_reproducible_from_its_trace(mode: Mode, trace: list[Observation]) -> None:
    assert replay(controller(mode), trace) == replay(controller(mode), trace)


def test_the_lifecycle_has_one_table_and_one_refusal_convention() -> None:
    state = step(None, JobEvent.SUBMIT)
    state = step(state, JobEvent.START)
    assert step(state, JobEvent.SUCCEED) is JobState.SUCCEEDED
    assert {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED} == FINAL
    with pytest.raises(JobRefused, match="cannot cancel when succeeded"):
        step(JobState.SUCCEEDED, JobEvent.CANCEL)  # the user's request: refused to the user
    with pytest.raises(JobStateError):
        step(JobState.CANCELLED, JobEvent.SUCCEED)  # the Manager's own move: a bug
