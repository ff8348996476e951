"""The demo's journey: every packet the meters sent is accounted for once, the views agree."""

from __future__ import annotations

import io

from rich.console import Console

from meterseal.demo import run_demo

REASONS = {
    "future_timestamp",
    "bad_signature",
    "decrypt_failed",
    "revoked_meter",
    "malformed",
    "unknown_suite",
    "meter_mismatch",
    "suite_mismatch",
    "bad_reading",
}


def test_demo_accounts_for_every_packet() -> None:
    out = io.StringIO()
    result = run_demo(Console(file=out, width=120), meters=10, days=1, faults=0.05, seed=3)
    sim, counts = result.simulation, result.stored_counts
    assert sim.connection_errors == 0
    assert sim.acks["retry"] == 0
    # Each packet that got a final answer is counted exactly once by the store.
    assert (
        sum(counts.values())
        == sum(sim.sent.values())
        == sim.acks["accepted"] + sim.acks["rejected"]
    )
    assert counts["stored"] > 0
    assert set(counts) - {"stored", "duplicate"} <= REASONS
    # The revoked meter's 96 readings are all refused (a few by an earlier reason: corruption).
    assert counts["revoked_meter"] >= 80
    assert counts["future_timestamp"] > 0  # the clock-skew fault
    # The utility's view sums exactly what was stored.
    assert sum(r.readings for r in result.regional) == counts["stored"]
    assert result.headend.latency_p50 is not None
    assert result.headend.latency_p99 is not None
    assert result.headend.latency_p50 <= result.headend.latency_p99
    assert "regional load" in out.getvalue()
    # Every customer is billed, every bill countersigned, and the tamper is named.
    billing = result.billing
    assert billing is not None
    assert billing.countersigned == billing.bills > 0
    assert billing.estimated_slots >= 96  # at least the revoked meter's whole day
    assert any(line.startswith("altered") and "energy_wh" in line for line in billing.caught)
    assert "metrology authority" in out.getvalue()
