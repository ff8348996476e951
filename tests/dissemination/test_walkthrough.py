"""docs/dissemination.md's walk-through runs as written, command by command (the tutorial's
harness: fresh directory, sample lines matched, NATS-dependent blocks skipped without NATS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_tutorial import PROBES, page_env, service_gate
from tests.tutorial_page import PageRun, parse_page

PAGE = Path(__file__).resolve().parents[2] / "docs" / "dissemination.md"


@pytest.mark.slow
@pytest.mark.services
def test_the_dissemination_walkthrough_runs_as_written(tmp_path: Path) -> None:
    steps = parse_page(PAGE.read_text())
    commands = " ".join(step.command for step in steps)
    for documented in ("router init", "router serve", "router aggregate", "router publish",
                       "router pseudonym", "consent grant", "consent list"):  # fmt: skip
        assert documented in commands, f"the walk-through lost `{documented}`"
    assert not {need for step in steps for need in step.needs} - set(PROBES)
    workdir, harness = tmp_path / "work", tmp_path / "harness"
    workdir.mkdir()
    harness.mkdir()
    outcome = PageRun(workdir, harness, page_env(tmp_path / "home")).run(steps, service_gate())
    if outcome.skipped:
        reasons = sorted({reason for _, reason in outcome.skipped})
        pytest.skip(f"{len(outcome.ran)} commands green; not run: " + "; ".join(reasons))
