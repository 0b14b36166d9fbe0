"""Encode observations for the classifier straight from their dicts, with the fitted encoder's own codes.

For one row, the pipeline's ColumnTransformer costs more than the 200 trees after it (building a DataFrame,
checking it, dispatching each transformer through joblib): a one-row predict_proba took 12 ms through the
pipeline and 4.4 ms this way on the bench machine (1,000 rows: 27 and 12 ms). The bundle's preprocessing is
a plain lookup (ordinal codes for the categories, numbers passed through), so this module reads the fitted
OrdinalEncoder's categories and does that lookup directly.

A HistGradientBoostingClassifier fitted with categorical features encodes those columns a second time,
inside its own predict (an OrdinalEncoder of the codes it saw at fit, in a ColumnTransformer of its own):
that second pass cost more than the trees for a micro-batch. When the classifier is of that kind, the two
lookups are folded into one (category -> the classifier's own code, its columns in its own order) and the
encoded matrix goes to its trees directly (worker/boosted_trees.py), or else to a copy of the classifier
without its re-encoding (the trees are shared, not copied).

`direct_encoders` gives every way it knows for the pipeline, fastest first; the bundle loader serves the first
that gives the pipeline's own probabilities on probe rows (see ModelBundle). A pipeline of another shape goes
through scikit-learn.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from core.feature_spec import FeatureSpec
from worker.boosted_trees import compiled_trees


@dataclass(frozen=True)
class EncodedColumn:
    """One column of the classifier's input.

    The feature's name, its codes (None: the value as it is) and the code of a value the codes do not know.
    """

    name: str
    codes: Mapping[Any, float] | None
    unknown: float = -1.0


@dataclass(frozen=True)
class DirectEncoder:
    """The classifier's input matrix built from dicts, column by column, and the classifier to give it to."""

    # How: "codes" (the pipeline's codes to its classifier), "folded" (the classifier's own codes to a copy
    # of it that does not encode again), "trees" (those codes to its trees, called directly).
    kind: str
    columns: tuple[EncodedColumn, ...]
    classifier: Any = field(repr=False)
    # Objects, as the ColumnTransformer gives them (a classifier that encodes again fitted its codes on
    # those); floats for the copy that does not.
    dtype: type = object

    def encode(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Return the matrix the classifier takes (float codes, numbers as they are)."""
        matrix: np.ndarray = np.empty((len(observations), len(self.columns)), dtype=self.dtype)
        for index, column in enumerate(self.columns):
            name, codes, unknown = column.name, column.codes, column.unknown
            if codes is None:
                matrix[:, index] = [observation[name] for observation in observations]
            else:
                matrix[:, index] = [codes.get(observation[name], unknown) for observation in observations]
        return matrix

    def predict_proba(self, observations: Sequence[Mapping[str, Any]]) -> Any:
        """Return the classifier's class probabilities for these observations."""
        return self.classifier.predict_proba(self.encode(observations))


def _is_passthrough(transformer: Any) -> bool:
    return transformer == "passthrough" or (
        isinstance(transformer, FunctionTransformer) and transformer.func is None
    )


def direct_encoders(pipeline: Any) -> list[DirectEncoder]:
    """Return the ways to predict with the pipeline straight from dicts, fastest first (none: other shape)."""
    columns = _pipeline_codes(pipeline)
    if columns is None:
        return []
    classifier = pipeline.steps[1][1]
    as_objects = DirectEncoder(kind="codes", columns=tuple(columns), classifier=classifier)
    folded = _folded_into(classifier, columns)
    ways = [as_objects] if folded is None else [folded, as_objects]
    # The trees take the codes of the fastest way so far: the folded copy's, or the pipeline's own when the
    # classifier encodes nothing again (as floats either way).
    trees = compiled_trees(ways[0].classifier)
    if trees is not None:
        ways.insert(0, replace(ways[0], kind="trees", classifier=trees, dtype=np.float64))
    return ways


def _pipeline_codes(pipeline: Any) -> list[EncodedColumn] | None:
    """Return the columns the pipeline's first step makes, or None when its shape is another one."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    preprocess = pipeline.steps[0][1]
    if not isinstance(preprocess, ColumnTransformer) or preprocess.remainder != "drop":
        return None
    columns: list[EncodedColumn] = []
    for _, transformer, names in preprocess.transformers_:
        if transformer == "drop":
            continue
        if _is_passthrough(transformer):
            columns += [EncodedColumn(name, None) for name in names]
        elif (
            isinstance(transformer, OrdinalEncoder)
            and transformer.handle_unknown == "use_encoded_value"
            and transformer.min_frequency is None
            and transformer.max_categories is None
            and transformer.dtype in (np.float64, float)
        ):
            unknown = float(transformer.unknown_value)
            for name, categories in zip(names, transformer.categories_, strict=True):
                codes = {category: float(code) for code, category in enumerate(categories)}
                columns.append(EncodedColumn(name, codes, unknown))
        else:
            return None
    if any(not isinstance(column.name, str) for column in columns):
        return None
    return columns


def _folded_into(classifier: Any, columns: list[EncodedColumn]) -> DirectEncoder | None:
    """Return the columns with the classifier's own re-encoding of categories folded in, or None.

    Only for the re-encoding HistGradientBoostingClassifier fits: an OrdinalEncoder of the categorical
    columns, which it puts first, and the others as floats.
    """
    inner = getattr(classifier, "_preprocessor", None)
    if not isinstance(inner, ColumnTransformer):
        return None
    try:
        (_, encoder, categorical), (_, numerical, _) = inner.transformers_[:2]
        categorical = np.asarray(categorical, dtype=bool)
        first = inner.output_indices_["encoder"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if categorical.shape != (len(columns),) or first != slice(0, int(categorical.sum())):
        return None
    category_columns = [
        column for column, is_category in zip(columns, categorical, strict=True) if is_category
    ]
    other_columns = [
        column for column, is_category in zip(columns, categorical, strict=True) if not is_category
    ]
    if (
        not isinstance(encoder, OrdinalEncoder)
        or encoder.handle_unknown != "use_encoded_value"
        or not isinstance(numerical, FunctionTransformer)
        or any(column.codes is None for column in category_columns)
    ):
        return None
    inner_unknown = float(encoder.unknown_value)
    folded: list[EncodedColumn] = []
    for column, seen in zip(category_columns, encoder.categories_, strict=True):
        inner_code = {float(code): float(index) for index, code in enumerate(seen)}
        codes = {value: inner_code.get(code, inner_unknown) for value, code in (column.codes or {}).items()}
        folded.append(EncodedColumn(column.name, codes, inner_code.get(column.unknown, inner_unknown)))
    without_reencoding = copy.copy(classifier)
    without_reencoding._preprocessor = None
    return DirectEncoder(
        kind="folded", columns=(*folded, *other_columns), classifier=without_reencoding, dtype=np.float64
    )


def probe_observations(spec: FeatureSpec) -> list[dict[str, Any]]:
    """Return rows in which every column takes each of its allowed values, both booleans and every integer in
    its bounds at least once (the equivalence check runs on them)."""
    sizes = [
        len(column.allowed) if column.kind == "category"
        else 2 if column.kind == "boolean"
        else (column.maximum or 0) - (column.minimum or 0) + 1
        for column in spec.columns
    ]  # fmt: skip
    probes: list[dict[str, Any]] = []
    for row in range(max(sizes)):
        observation: dict[str, Any] = {}
        for offset, (column, size) in enumerate(zip(spec.columns, sizes, strict=True)):
            step = (row + offset) % size  # shifted per column, so columns do not move in lockstep
            if column.kind == "category":
                observation[column.name] = column.allowed[step]
            elif column.kind == "boolean":
                observation[column.name] = bool(step)
            else:
                observation[column.name] = (column.minimum or 0) + step
        probes.append(observation)
    return probes


def unseen_category_probes(spec: FeatureSpec) -> list[dict[str, Any]]:
    """Return one probe row per category column with a value the model never saw in that column."""
    base = probe_observations(spec)[0]
    return [
        {**base, column.name: "\x00" + max(column.allowed, key=len)}  # longer than every allowed value
        for column in spec.columns
        if column.kind == "category"
    ]
