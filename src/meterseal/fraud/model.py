"""A supervised model saved to a file by `fraud train` and read back by `rank --model`.

The file is a joblib pickle of the fitted scikit-learn model with the feature and
detector names it was trained on and the data's resolution (days of 96 quarter hours, or
the SGCC layout's weeks of 7 daily values: the same feature has another scale in each); a
model whose names differ from this version's (trained by another meterseal) is refused with
one clear error, and so is data of another resolution (`SavedModel.check`). A pickle runs
code when loaded: load only models you trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterseal.fraud.data import FraudDataError
from meterseal.fraud.ensemble import DETECTORS
from meterseal.fraud.features import NAMES

FORMAT = 2


@dataclass(frozen=True)
class SavedModel:
    """A trained model and what it was trained on."""

    model: Any
    customers: int  # labelled customers it learnt from
    thieves: int
    source: str  # the file or store it was trained on
    period_days: int = 1  # the data's resolution: periods of this many days
    slots: int = 96  # of this many values

    def resolution(self) -> str:
        """The data's resolution in words."""
        return _resolution(self.period_days, self.slots)

    def check(self, period_days: int, slots: int) -> None:
        """Refuse data of another resolution than the model's."""
        if (period_days, slots) != (self.period_days, self.slots):
            raise FraudDataError(
                f"the model was trained on {self.resolution()}, this data has "
                f"{_resolution(period_days, slots)}: train a model on data like it"
            )


def _resolution(period_days: int, slots: int) -> str:
    if period_days == 1:
        return f"days of {slots} readings"
    return f"periods of {period_days} days of {slots} readings"


def _detectors() -> list[list[str]]:
    """Each detector's pattern and features: the model's inputs beyond the features (a
    detector whose features change under the same pattern is another input)."""
    return [[d.pattern, *d.features] for d in DETECTORS]


def save(saved: SavedModel, path: Path) -> Path:
    """Write the model file (its parent folder made when missing)."""
    import joblib  # type: ignore[import-untyped]

    record = {
        "format": FORMAT,
        "features": list(NAMES),
        "detectors": _detectors(),
        "model": saved.model,
        "customers": saved.customers,
        "thieves": saved.thieves,
        "source": saved.source,
        "period_days": saved.period_days,
        "slots": saved.slots,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(record, path)
    except OSError as exc:
        raise FraudDataError(f"cannot write {path}: {exc}") from None
    return path


def load(path: Path) -> SavedModel:
    """Read a model file written by `save`; one clear error for anything else."""
    import joblib

    try:
        record = joblib.load(path)
    except FileNotFoundError:
        raise FraudDataError(f"{path}: no such model file") from None
    except Exception as exc:  # any unreadable pickle is one error
        raise FraudDataError(f"{path}: not a meterseal fraud model ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise FraudDataError(f"{path}: not a meterseal fraud model (format {FORMAT})")
    if record.get("features") != list(NAMES) or record.get("detectors") != _detectors():
        raise FraudDataError(
            f"{path}: trained on other features than this meterseal's: train it again"
        )
    return SavedModel(
        record["model"],
        record["customers"],
        record["thieves"],
        record["source"],
        record["period_days"],
        record["slots"],
    )
