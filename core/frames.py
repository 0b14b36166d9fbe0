"""Turn validated observations into the DataFrame the pipeline was trained on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from core.feature_spec import FeatureSpec

_DTYPES = {"category": "str", "boolean": "bool", "integer": "int64"}


def build_frame(observations: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Return one row per observation, columns in the spec's order, with the trained dtypes."""
    return pd.DataFrame(
        {
            column.name: pd.Series(
                [observation[column.name] for observation in observations],
                dtype=_DTYPES[column.kind],
            )
            for column in spec.columns
        },
        columns=spec.names,
    )
