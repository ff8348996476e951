"""Metric names say what they count: rejections are refusals only, storage has its own."""

from __future__ import annotations

from collections import Counter

from meterseal.acquisition.records import StoreOutcome
from meterseal.errors import RejectReason
from meterseal.runtime.metrics import STORAGE_OUTCOMES, ServiceMetrics, parse_exposition


def test_stored_and_duplicate_readings_are_not_rejections() -> None:
    metrics = ServiceMetrics("probe")
    counts = Counter({"stored": 5, "duplicate": 2, "bad_signature": 3, "replayed_counter": 1})
    metrics.bridge_stages(lambda: counts)
    samples = parse_exposition(metrics.exposition().decode())
    rejections = {k: v for k, v in samples.items() if k.startswith("meterseal_rejections_total")}
    assert rejections == {
        "meterseal_rejections_total{reason=bad_signature}": 3,
        "meterseal_rejections_total{reason=replayed_counter}": 1,
    }
    assert samples["meterseal_readings_stored_total{outcome=stored}"] == 5
    assert samples["meterseal_readings_stored_total{outcome=duplicate}"] == 2


def test_storage_outcomes_are_the_store_outcomes_but_conflict() -> None:
    # A conflict (same meter and counter, other content) is the rejection replayed_counter.
    assert {o.value for o in StoreOutcome} - STORAGE_OUTCOMES == {"conflict"}
    assert RejectReason.REPLAYED_COUNTER.value not in STORAGE_OUTCOMES


def test_every_metric_has_help_text_that_is_not_its_name() -> None:
    metrics = ServiceMetrics("probe")
    metrics.bridge_stages(Counter)
    for family in metrics.registry.collect():
        assert family.documentation
        assert family.documentation.lower() != family.name.replace("_", " ")
