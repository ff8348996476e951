"""Saved supervised models: read back as written, refused when this version's features differ."""

from __future__ import annotations

from pathlib import Path

import joblib  # type: ignore[import-untyped]
import pytest

from meterseal.fraud.data import FraudDataError
from meterseal.fraud.ensemble import PATTERNS
from meterseal.fraud.features import NAMES
from meterseal.fraud.model import SavedModel, load, save


def test_a_saved_model_reads_back(tmp_path: Path) -> None:
    path = save(SavedModel({"trees": 3}, 40, 4, "fleet.csv", 7, 7), tmp_path / "m" / "a.joblib")
    back = load(path)
    assert (back.model, back.customers, back.thieves, back.source) == (
        {"trees": 3},
        40,
        4,
        "fleet.csv",
    )
    assert (back.period_days, back.slots) == (7, 7)


@pytest.mark.parametrize("before", ["features", "detectors", "detector inputs", "pattern list"])
def test_a_model_of_other_features_or_detectors_is_refused(tmp_path: Path, before: str) -> None:
    """A model trained on other columns (a feature or a detector fewer, or a detector of
    the same pattern made of other features) would read them shifted or mean otherwise."""
    path = save(SavedModel({"trees": 3}, 40, 4, "fleet.csv"), tmp_path / "old.joblib")
    record = joblib.load(path)
    if before == "features":
        record["features"] = [n for n in NAMES if n != "level_shift"]
    elif before == "detectors":
        record["detectors"] = [
            d for d in record["detectors"] if d != ["scaled readings", "level_shift"]
        ]
    elif before == "detector inputs":  # the same patterns, the reversed day of other features
        record["detectors"] = [
            ["reversed day", "profile_reversal"] if d[0] == "reversed day" else d
            for d in record["detectors"]
        ]
    else:  # the record of earlier versions: pattern names alone
        record["detectors"] = list(PATTERNS)
    joblib.dump(record, path)
    with pytest.raises(FraudDataError, match="trained on other features than this meterseal's"):
        load(path)
