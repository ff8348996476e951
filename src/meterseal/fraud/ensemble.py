"""From features to one score per customer: the unsupervised ensemble and the supervised model.

Unsupervised (no label is ever read): one detector per theft pattern, each the
normalised sum of the features that pattern moves (t statistics add up as independent
evidence: sum / sqrt(count)); a customer's score is its strongest detector, which also names
the pattern in its explanation. Where inspection labels exist, a gradient-boosting model
(scikit-learn) learns from the features and the detectors instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meterseal.fraud.data import FraudDataError
from meterseal.fraud.features import NAMES, ZERO_EVIDENCE, FeatureTable

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
MISMATCH_SCALE = 20.0  # a share of mismatching days -> t-like units (a quarter of days: 5)
CALIBRATION = 0.9  # the population quantile each detector is scaled by
TIE_WEIGHT = 0.01  # weight of the mean of all detectors in the score (orders equal maxima)
MIN_SPREAD = 0.5  # t units: detectors silent for nine customers in ten keep this scale
# Customers a leaf of the supervised model's trees holds at least, one per LEAF_SHARE of
# those it learns from, up to MIN_LEAF: leaves of one or two let boosting push honest
# customers without evidence to an out-of-fold probability of 1.000 (6 of the top 10 on the
# 10,000-customer simulator; leaves of 10, 20 and 50 alike fixed it), while a few hundred
# labelled customers hold too few thieves to fill leaves of 20.
MIN_LEAF = 20
LEAF_SHARE = 200


@dataclass(frozen=True)
class Detector:
    """A theft pattern and the features whose evidence adds up for it (the defining one
    first: it names the pattern in explanations whenever it shows)."""

    pattern: str
    features: tuple[str, ...]


DETECTORS = (
    Detector("scaled readings", ("scale_drop", "base_drop")),
    # The levels the readings sit at: a detector of its own, calibrated apart, since it
    # speaks where a season hides the drop of the day's energy (and for a drift too).
    Detector("scaled readings", ("level_shift",)),
    Detector("zeroed window", ("zero_rise",)),
    Detector("random scaling", ("roughening",)),
    Detector("constant readings", ("flattening",)),
    # The customer's own days against its earlier ones, and against the population's shape.
    # Not its hour-of-day profile mirrored (profile_reversal): households whose one daily
    # peak moves between night and evening with the season (the UCI house's later years)
    # mirror their profile honestly.
    Detector("reversed day", ("own_reversal", "reversal")),
    Detector("phase current", ("phase_share_drop", "current_drop")),
    Detector("tampered register", ("phasor_mismatch",)),
    # A drifting register slides every level the readings sit at, further week by week
    # (`level_drift`); on data without appliance levels (a reading or a few a day), or a
    # customer with fewer than 35 days (14 before its onset, 3 weeks after), it is silent
    # and the standby load's ramp below speaks alone.
    Detector("gradual drift", ("level_drift",)),
    # The standby load's ramp alone: a detector of its own, so that its honest tail (a
    # season) is calibrated apart from the stricter test's.
    Detector("gradual drift", ("base_drift",)),
    # A bypassed window that holds the night's hours takes the standby load down with it.
    Detector("partial-day bypass", ("bypass", "base_drop")),
)
PATTERNS = tuple(d.pattern for d in DETECTORS)


def detector_scores(table: FeatureTable) -> F64:
    """Each detector's evidence for each customer (customers, detectors), >= 0."""
    raw = np.nan_to_num(table.values)
    raw[:, NAMES.index("phasor_mismatch")] *= MISMATCH_SCALE
    # softplus, not max(t, 0): evidence against theft still orders customers (no ties
    # among the many without evidence), and a t of a few units counts as itself.
    values = np.logaddexp(0.0, raw)
    out = np.zeros((len(values), len(DETECTORS)))
    for j, det in enumerate(DETECTORS):
        cols = [NAMES.index(n) for n in det.features]
        out[:, j] = values[:, cols].sum(1) / np.sqrt(len(cols))
    # A window read as zero is a zeroed window: the bypass detector's standby-load
    # evidence must not speak for it (its own detector names it).
    zeroed = raw[:, NAMES.index("zero_rise")] >= ZERO_EVIDENCE
    out[zeroed, PATTERNS.index("partial-day bypass")] = 0.0
    return out


@dataclass(frozen=True)
class Scores:
    """A score per customer (higher: more likely to steal) and the detector behind it."""

    customers: tuple[str, ...]
    score: F64
    detectors: F64  # (customers, detectors)
    method: str

    @property
    def pattern(self) -> list[str]:
        """The pattern of each customer's strongest detector."""
        return [PATTERNS[j] for j in np.argmax(self.detectors, axis=1).tolist()]


def calibrated(detectors: F64) -> F64:
    """Detectors on one scale: (value - median) / (90th percentile - median) over everyone.

    Each detector has its own tail among honest customers (shapes vary more than standby
    loads); since any one pattern is far rarer than one customer in ten, the population's
    median and 90th percentile describe honest customers, labels unseen.
    """
    median = np.median(detectors, axis=0)
    spread = np.maximum(np.quantile(detectors, CALIBRATION, axis=0) - median, MIN_SPREAD)
    out: F64 = (detectors - median) / spread
    # A detector with one value for everyone (phasor detectors without phasor reports)
    # says nothing: it must not set a floor every customer ties on.
    silent = np.ptp(detectors, axis=0) <= 1e-12
    if silent.all():
        return np.zeros_like(out)
    out[:, silent] = -np.inf
    return out


def unsupervised(table: FeatureTable) -> Scores:
    """The unsupervised ensemble: each customer's strongest calibrated pattern detector."""
    det = calibrated(detector_scores(table))
    finite = np.where(np.isfinite(det), det, 0.0)
    # Many customers sit exactly on a detector's median (no zero runs, say): the mean of
    # all detectors, weighed a hundredth, orders them without moving anyone with evidence.
    score = det.max(1) + TIE_WEIGHT * finite.mean(1)
    # No lasting-change test could run (no data, or too few days): no evidence, last.
    untested = (table.onset < 0).all(axis=1) & (np.nan_to_num(table.values) <= 0).all(axis=1)
    if untested.any() and not untested.all():
        score[untested] = score[~untested].min() - 1.0
    return Scores(table.customers, score, finite, "meterseal")


def design(table: FeatureTable) -> F64:
    """The supervised model's inputs: every feature and every detector."""
    return np.hstack([np.nan_to_num(table.values), detector_scores(table)])


def _model(seed: int, rows: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    # The classic single-threaded trees: the histogram variant's OpenMP threads fight the
    # other processes of a 2-core machine for far longer than these few features need.
    return GradientBoostingClassifier(
        n_estimators=150,
        learning_rate=0.05,
        max_depth=3,
        subsample=0.8,
        min_samples_leaf=max(1, min(MIN_LEAF, rows // LEAF_SHARE)),
        random_state=seed,
    )


def supervised(
    table: FeatureTable, labels: Mapping[str, bool], *, seed: int = 1, folds: int = 5
) -> Scores:
    """Gradient boosting trained on the labelled customers, scoring everyone.

    Labelled customers get out-of-fold probabilities (each from a model that never saw its
    label); the others get the model trained on every label.
    """
    from sklearn.model_selection import StratifiedKFold

    x = design(table)
    rows = np.array([i for i, c in enumerate(table.customers) if c in labels], np.int64)
    y = np.array([bool(labels[table.customers[i]]) for i in rows.tolist()])
    if len(rows) < 2 * folds or y.sum() < folds or (~y).sum() < folds:
        raise FraudDataError(
            f"the supervised model needs at least {folds} thieves and {folds} honest customers "
            f"among the labelled ones (got {int(y.sum())} and {int((~y).sum())})"
        )
    score = np.full(len(x), np.nan)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, test in split.split(rows, y):
        model = _model(seed, len(train))
        model.fit(x[rows[train]], y[train])
        score[rows[test]] = model.predict_proba(x[rows[test]])[:, 1]
    others = np.setdiff1d(np.arange(len(x)), rows)
    if len(others):
        model = _model(seed, len(rows))
        model.fit(x[rows], y)
        score[others] = model.predict_proba(x[others])[:, 1]
    # Boosted probabilities saturate near 0 and 1: equal ones are ordered by the ensemble.
    base = unsupervised(table)
    order = np.argsort(np.argsort(base.score, kind="stable"), kind="stable") / len(x)
    score = np.round(score, 3) + 1e-4 * order
    return Scores(table.customers, score, base.detectors, "meterseal (supervised)")


def train(table: FeatureTable, labels: Mapping[str, bool], *, seed: int = 1) -> Any:
    """Gradient boosting fitted on every labelled customer of `table` (to apply elsewhere)."""
    x = design(table)
    rows = np.array([i for i, c in enumerate(table.customers) if c in labels], np.int64)
    y = np.array([bool(labels[table.customers[i]]) for i in rows.tolist()])
    if y.sum() < 2 or (~y).sum() < 2:
        raise FraudDataError(
            f"training needs at least 2 thieves and 2 honest customers among the labelled "
            f"ones (got {int(y.sum())} and {int((~y).sum())})"
        )
    model = _model(seed, len(rows))
    model.fit(x[rows], y)
    return model


def applied(model: Any, table: FeatureTable) -> Scores:
    """A trained model's probabilities for every customer of `table`; equal ones ordered
    by the unsupervised ensemble."""
    base = unsupervised(table)
    score = model.predict_proba(design(table))[:, 1]
    order = np.argsort(np.argsort(base.score, kind="stable"), kind="stable") / len(score)
    return Scores(table.customers, np.round(score, 3) + 1e-4 * order, base.detectors, "model")


def truth_of(customers: Sequence[str], labels: Mapping[str, bool]) -> B:
    """Labels in customer order (customers without a label count as honest)."""
    return np.array([bool(labels.get(c, False)) for c in customers])
