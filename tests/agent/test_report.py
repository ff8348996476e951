"""What `agent run` says of readings the head-end did not store (agent.report.loss_lines)."""

from __future__ import annotations

from collections import Counter

from meterseal.agent.report import AgentReport, loss_lines


def test_only_unacknowledged_readings_are_offered_a_rerun() -> None:
    report = AgentReport(unacknowledged=3)
    report.acks["rejected"] = 10
    refused = Counter({"stored": 5, "replayed_counter": 6, "stale_counter": 2, "unknown_meter": 2})
    lines = loss_lines(report, refused)
    assert (
        lines[0]
        == "13 sealed readings were not stored by the head-end (rejected 10, unacknowledged 3)"
    )
    assert (
        lines[1] == "the head-end's reasons: replayed_counter 6, stale_counter 2, unknown_meter 2"
    )
    assert lines[2].startswith("8 refused as replayed_counter/stale_counter: the head-end already")
    assert lines[3].startswith("2 refused for good")
    assert lines[4].startswith("3 never acknowledged")
    assert "run the pass again" in lines[4]
    assert len(lines) == 5
    unread = loss_lines(report, None)
    assert unread[1].startswith("10 rejected for reasons the head-end does not send")
    assert loss_lines(AgentReport(), Counter({"stored": 96})) == []
