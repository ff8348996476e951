"""How good a ranking is: AUC, MAP@N (Zheng et al. 2018) and recall per theft pattern.

MAP@N as defined by Zheng, Yang, Niu, Dai and Zhou, "Wide and deep convolutional neural
networks for electricity-theft detection to secure smart grids" (IEEE Trans. Industrial
Informatics 14(4), 2018): with r thieves among the top N of the ranking at positions
k_1 < ... < k_r, MAP@N = (1/r) * sum_i P@k_i, where P@k is the share of thieves in the top
k; 0 when the top N holds no thief. Ties in a score are broken by the customer's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


def ranking(scores: F64) -> npt.NDArray[np.int64]:
    """Customer rows from most to least suspicious (stable: ties keep input order)."""
    order: npt.NDArray[np.int64] = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    return order


def auc(truth: B, scores: F64) -> float:
    """Area under the ROC curve (ties counted half); NaN without both classes."""
    from sklearn.metrics import roc_auc_score

    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, np.nan_to_num(scores, nan=-np.inf, neginf=-1e300)))


def map_at(truth: B, scores: F64, n: int) -> float:
    """MAP@N of Zheng et al. (2018)."""
    top = truth[ranking(scores)[:n]]
    positions = np.flatnonzero(top) + 1
    if not len(positions):
        return 0.0
    precision = np.arange(1, len(positions) + 1) / positions
    return float(precision.mean())


def recall_by_pattern(
    truth: B, patterns: Sequence[str], scores: F64, cut: int | None = None
) -> dict[str, float]:
    """Share of each pattern's thieves within the top `cut` (default: as many as thieves)."""
    cut = int(truth.sum()) if cut is None else cut
    flagged = np.zeros(len(truth), bool)
    flagged[ranking(scores)[:cut]] = True
    kinds = np.asarray(patterns, dtype=object)
    out = {}
    for pattern in sorted({p for p, t in zip(patterns, truth, strict=True) if t}):
        rows = (kinds == pattern) & truth
        out[pattern] = float(flagged[rows].mean())
    return out


@dataclass(frozen=True)
class Evaluation:
    """One method's figures on one labelled data set."""

    method: str
    auc: float
    map_at: dict[int, float]
    recall: dict[str, float]
    cut: int
    seconds: float = 0.0

    @classmethod
    def of(
        cls,
        method: str,
        truth: B,
        patterns: Sequence[str],
        scores: F64,
        n: Sequence[int] = (100, 200),
        seconds: float = 0.0,
    ) -> Evaluation:
        """Every figure of one ranking."""
        return cls(
            method,
            auc(truth, scores),
            {k: map_at(truth, scores, k) for k in n},
            recall_by_pattern(truth, patterns, scores),
            int(truth.sum()),
            seconds,
        )
