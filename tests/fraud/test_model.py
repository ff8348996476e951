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


@pytest.mark.parametrize("before", ["features", "detectors"])
def test_a_model_of_the_features_before_level_shift_is_refused(tmp_path: Path, before: str) -> None:
    """A model trained before `level_shift` (its feature and its detector) learnt other
    columns: applied now it would read every column after them shifted by one."""
    path = save(SavedModel({"trees": 3}, 40, 4, "fleet.csv"), tmp_path / "old.joblib")
    record = joblib.load(path)
    if before == "features":
        record["features"] = [n for n in NAMES if n != "level_shift"]
    else:
        index = [i for i, p in enumerate(PATTERNS) if p == "scaled readings"][1]
        record["detectors"] = [p for i, p in enumerate(PATTERNS) if i != index]
    joblib.dump(record, path)
    with pytest.raises(FraudDataError, match="trained on other features than this meterseal's"):
        load(path)
