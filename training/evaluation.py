"""Score a model against the business bar: precision of positive calls (searches that find contraband)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import precision_recall_curve, precision_score, recall_score, roc_auc_score

PRECISION_BAR = 0.5


def verify_success_rate_above(
    y_true: ArrayLike, y_pred: ArrayLike, min_success_rate: float = PRECISION_BAR
) -> bool:
    """Return whether the share of positive calls that were right reaches min_success_rate."""
    true = np.asarray(y_true, dtype=bool)
    pred = np.asarray(y_pred, dtype=bool)
    if not pred.any():
        return False
    return bool(true[pred].mean() >= min_success_rate)


def choose_threshold(y_true: ArrayLike, proba: ArrayLike, min_precision: float = PRECISION_BAR) -> float:
    """Return the lowest threshold (highest recall) whose precision reaches min_precision."""
    precision, _recall, thresholds = precision_recall_curve(y_true, proba)
    meets = np.flatnonzero(precision[:-1] >= min_precision)
    if meets.size == 0:
        raise ValueError(f"no threshold reaches precision {min_precision}")
    return float(thresholds[meets[0]])


def held_out_metrics(y_true: ArrayLike, proba: ArrayLike, threshold: float) -> dict[str, float]:
    """Return ROC AUC, and precision and recall at threshold."""
    pred = np.asarray(proba) >= threshold
    return {
        "roc_auc": round(float(roc_auc_score(y_true, proba)), 4),
        "precision": round(float(precision_score(y_true, pred, zero_division=0)), 4),
        "recall": round(float(recall_score(y_true, pred)), 4),
        "positive_rate_predicted": round(float(pred.mean()), 4),
    }
