"""The whole job on a small labelled fleet: ranking, explanations, models, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from meterseal.fraud.data import FraudDataError
from meterseal.fraud.ensemble import LEAF_SHARE, MIN_LEAF, PATTERNS, supervised, train, unsupervised
from meterseal.fraud.evaluate import compare
from meterseal.fraud.explain import explain
from meterseal.fraud.features import NAMES
from meterseal.fraud.fleet import Labelled
from meterseal.fraud.metrics import ranking
from meterseal.fraud.pipeline import Analysis, analyse
from tests.fraud.conftest import SETTINGS


def test_the_ensemble_beats_both_baselines(small_fleet: Labelled, small_analysis: Analysis) -> None:
    result = compare(
        small_fleet.data,
        small_analysis,
        small_fleet.thief,
        small_fleet.patterns,
        dataset="small",
        seed=3,
        n=(20,),
        with_supervised=True,
    )
    rows = {e.method: e for e in result.rows}
    ours = rows["meterseal"]
    for base in ("IsolationForest", "LocalOutlierFactor"):
        assert ours.auc > rows[base].auc + 0.2
        assert ours.map_at[20] > rows[base].map_at[20]
    assert ours.auc > 0.95
    assert rows["meterseal (supervised)"].auc > 0.9
    assert set(ours.recall) == {p for p in small_fleet.patterns if p}
    # About seven thieves a pattern: each is mostly found at a cut of the number of thieves,
    # and the thefts only a shape reveals (reversed, constant days) all of them.
    assert min(ours.recall.values()) >= 0.75, ours.recall
    assert ours.recall["reversed"] == ours.recall["constant_mean"] == 1.0


def test_flagged_customers_are_explained(small_fleet: Labelled, small_analysis: Analysis) -> None:
    scores = unsupervised(small_analysis.table)
    data = small_fleet.data
    top = [data.customers[i] for i in ranking(scores.score)[:10].tolist()]
    why = explain(small_analysis, scores, data.first_day, 1, data.regions, top)
    assert [e.rank for e in why] == list(range(1, 11))
    for e in why:
        assert e.pattern in PATTERNS
        assert e.feature in NAMES
        assert e.t > 0
        assert e.onset is not None
        assert e.onset >= data.first_day
        assert all(d >= e.onset for d in e.days)
        assert e.pattern in e.text()
        assert str(e.onset) in e.text()
    # A zeroed-window thief is explained by the zero readings, from its true onset.
    zeroed = [c for c in top if small_fleet.alterations.get(c, None) is not None
              and str(small_fleet.alterations[c].kind) == "zeroed"]  # fmt: skip
    for e in (w for w in why if w.customer in zeroed):
        onset = small_fleet.alterations[e.customer].onset_day
        assert e.feature == "zero_rise"
        assert e.onset is not None
        assert (e.onset - data.first_day).days == onset - _first_unix_day(small_fleet)
        assert len(e.days) >= 3


def _first_unix_day(fleet: Labelled) -> int:
    import datetime as dt

    return (fleet.data.first_day - dt.date(1970, 1, 1)).days


def test_the_evaluation_trains_on_its_labels_only_when_asked(
    small_fleet: Labelled, small_analysis: Analysis
) -> None:
    """Scores from a model that saw the labels being evaluated are not an evaluation: the
    supervised row comes only when asked for (cross-validated)."""
    plain = compare(
        small_fleet.data,
        small_analysis,
        small_fleet.thief,
        small_fleet.patterns,
        dataset="small",
        n=(20,),
    )
    assert [e.method for e in plain.rows] == [
        "SOM correlation (seed)",
        "meterseal",
        "IsolationForest",
        "LocalOutlierFactor",
    ]


def test_supervised_needs_enough_labels(small_analysis: Analysis) -> None:
    few = {small_analysis.table.customers[0]: True, small_analysis.table.customers[1]: False}
    with pytest.raises(FraudDataError, match="at least 5 thieves"):
        supervised(small_analysis.table, few)


def test_supervised_scores_every_customer(small_fleet: Labelled, small_analysis: Analysis) -> None:
    labels = dict(
        zip(small_fleet.data.customers[:300], small_fleet.thief[:300].tolist(), strict=True)
    )
    scores = supervised(small_analysis.table, labels, seed=3)
    assert not np.isnan(scores.score).any()
    unseen = small_fleet.thief[300:]
    assert scores.score[300:][unseen].mean() > scores.score[300:][~unseen].mean()


def test_no_leaf_of_the_supervised_model_holds_a_few_customers(
    small_fleet: Labelled, small_analysis: Analysis
) -> None:
    """A leaf of one or two customers let boosting give honest customers without evidence
    an out-of-fold probability of 1.000 on the 10,000-customer simulator."""
    labels = dict(zip(small_fleet.data.customers, small_fleet.thief.tolist(), strict=True))
    model = train(small_analysis.table, labels, seed=3)
    leaves = [
        tree.tree_.n_node_samples[tree.tree_.children_left == -1]
        for tree in model.estimators_[:, 0]
    ]
    assert len(labels) // LEAF_SHARE > 1  # leaves of more than one customer asked
    assert min(int(held.min()) for held in leaves) >= min(MIN_LEAF, len(labels) // LEAF_SHARE)


def test_same_seed_same_scores_other_seed_other_map(small_fleet: Labelled) -> None:
    data = small_fleet.data.take(slice(0, 150))
    a = analyse(data, SETTINGS)
    b = analyse(data, SETTINGS)
    np.testing.assert_array_equal(a.table.values, b.table.values)
    np.testing.assert_array_equal(a.shape_map.weights, b.shape_map.weights)
    from dataclasses import replace

    c = analyse(data, replace(SETTINGS, seed=SETTINGS.seed + 1))
    assert not np.array_equal(a.shape_map.weights, c.shape_map.weights)


def test_customers_without_data_rank_last_without_crashing(small_fleet: Labelled) -> None:
    data = small_fleet.data.take(slice(0, 120))
    energy = data.energy.copy()
    energy[5] = np.nan  # a customer with no reading at all
    energy[6, :, ::2] = np.nan  # half of every day missing: every day counts as missing
    energy[7, 3:9] = np.nan  # a missing week
    from dataclasses import replace

    broken = replace(data, energy=energy)
    scores = unsupervised(analyse(broken, SETTINGS).table)
    assert np.isfinite(scores.score).all()
    assert scores.score[5] <= np.median(scores.score)
    assert scores.score[6] <= np.median(scores.score)


def test_customers_whose_windows_start_and_end_on_other_dates(small_fleet: Labelled) -> None:
    """Each customer's 21 days placed 0-14 days into a 35-day window (gaps at either end,
    no two windows need agree), and three thieves moved one to three months later, each alone on
    its days: the ranking holds, and the late thieves keep their evidence (the day's median of
    the others was once their own day, and a step had to last to the file's last day)."""
    from meterseal.fraud.data import Consumption
    from meterseal.fraud.metrics import auc

    data = small_fleet.data
    customers, days, slots = data.energy.shape
    rng = np.random.default_rng(21)
    shift = rng.integers(0, 15, size=(customers,))
    thieves = np.flatnonzero(small_fleet.thief)
    late = thieves[[0, len(thieves) // 2, -1]]
    shift[late] = [40, 62, 84]  # each alone on its days
    energy = np.full((customers, 84 + days, slots), np.nan)
    for row in range(customers):
        energy[row, shift[row] : shift[row] + days] = data.energy[row]
    staggered = Consumption(data.customers, data.first_day, energy, tz=data.tz)
    scores = unsupervised(analyse(staggered, SETTINGS).table).score
    assert auc(small_fleet.thief, scores) > 0.97
    place = np.argsort(np.argsort(-scores))
    assert (place[late] < len(thieves)).all(), place[late]


def test_a_window_read_as_zero_is_named_a_zeroed_window_not_a_bypass() -> None:
    """Zero runs that rose explain a fallen standby load: the bypass detector, which adds
    the standby load's evidence, must not name the customer (its bypass feature is 0)."""
    from meterseal.fraud.features import ZERO_EVIDENCE, FeatureTable

    rng = np.random.default_rng(4)
    values = rng.normal(0.0, 1.0, (60, len(NAMES)))
    values[0] = 0.0
    values[0, NAMES.index("zero_rise")] = ZERO_EVIDENCE + 1.0
    values[0, NAMES.index("base_drop")] = 40.0
    values[1] = 0.0
    values[1, NAMES.index("base_drop")] = 40.0  # no zeros: the standby load alone fell
    table = FeatureTable(
        tuple(f"C{i}" for i in range(60)), values, np.zeros(values.shape, np.int64)
    )
    scores = unsupervised(table)
    assert scores.pattern[0] != "partial-day bypass"
    bypass = PATTERNS.index("partial-day bypass")
    assert scores.detectors[0, bypass] < scores.detectors[1, bypass]


def test_a_customer_whose_levels_fell_is_explained_by_level_shift(
    small_fleet: Labelled, small_analysis: Analysis
) -> None:
    """The level shift's own detector names the scaled readings, its feature and its onset
    (converted with the data's period length), and the days from then on."""
    import dataclasses
    import datetime as dt

    from meterseal.fraud.features import FEATURES, FeatureTable

    table = small_analysis.table
    values, onset = table.values.copy(), table.onset.copy()
    j = NAMES.index("level_shift")
    values[0], onset[0] = 0.0, -1
    values[0, j], onset[0, j] = 40.0, 9
    analysis = dataclasses.replace(
        small_analysis, table=FeatureTable(table.customers, values, onset)
    )
    scores = unsupervised(analysis.table)
    data = small_fleet.data
    for period_days in (1, 7):
        (why,) = explain(
            analysis, scores, data.first_day, period_days, data.regions, [data.customers[0]]
        )
        assert (why.pattern, why.feature, why.t) == ("scaled readings", "level_shift", 40.0)
        assert why.evidence == (("level_shift", 40.0),)
        assert why.onset == data.first_day + dt.timedelta(days=9 * period_days)
        assert why.days[0] == why.onset
        assert len(why.days) == 21 - 9
        assert FEATURES[j].meaning in why.text()
