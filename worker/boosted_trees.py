"""Predict with a binary HistGradientBoostingClassifier's trees, without scikit-learn's loop around them.

For a micro-batch, the classifier's predict_proba spends most of its time around its trees (200 in the
committed bundle), not in them: per tree a functools.partial, a method call and a fresh output array, after
input validation. CompiledTrees calls the same compiled function per tree (`_predict_from_raw_data`), adds
their outputs in the same order into one buffer and applies the classifier's own link, so its probabilities
are the classifier's, bit for bit. The function is private to scikit-learn: when it is not where this module
looks, or the bundle loader's check on probe rows disagrees, the classifier serves as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier


@dataclass(frozen=True, eq=False)  # arrays: no field-wise equality
class CompiledTrees:
    """A binary classifier's trees (nodes and category bitsets, shared with it), baseline and link."""

    trees: tuple[tuple[np.ndarray, np.ndarray], ...]
    known_categories: np.ndarray
    feature_index: np.ndarray
    baseline: np.ndarray
    loss: Any
    predict_tree: Callable[..., None]
    threads: Callable[[], int]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Return both classes' probabilities for rows already encoded as the trees read them (float64)."""
        rows = matrix.shape[0]
        raw = np.zeros((rows, 1))
        raw += self.baseline
        total, out = raw[:, 0], np.empty(rows)
        threads = self.threads()
        for nodes, left_categories in self.trees:
            self.predict_tree(
                nodes, matrix, left_categories, self.known_categories, self.feature_index, threads, out
            )
            total += out
        return np.asarray(self.loss.predict_proba(raw))


def compiled_trees(classifier: Any) -> CompiledTrees | None:
    """Return the trees of a binary HistGradientBoostingClassifier that takes its input as given, else None.

    "As given": it has no re-encoding of its own (fitted without categorical features, or a copy without it).
    """
    if not isinstance(classifier, HistGradientBoostingClassifier):
        return None
    try:
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except ImportError:
        return None
    try:
        if classifier._preprocessor is not None or classifier.n_trees_per_iteration_ != 1:
            return None
        known_categories, feature_index = classifier._bin_mapper.make_known_categories_bitsets()
        trees = tuple(
            (predictor.nodes, predictor.raw_left_cat_bitsets)
            for iteration in classifier._predictors
            for predictor in iteration
        )
        return CompiledTrees(
            trees=trees,
            known_categories=known_categories,
            feature_index=feature_index,
            baseline=np.asarray(classifier._baseline_prediction, dtype=np.float64),
            loss=classifier._loss,
            predict_tree=_predict_from_raw_data,
            threads=_openmp_effective_n_threads,
        )
    except (AttributeError, TypeError, ValueError):
        return None
