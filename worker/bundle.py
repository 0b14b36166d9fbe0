"""Load a versioned model bundle: the checksum-verified pipeline with its spec and metadata."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from threadpoolctl import threadpool_limits

from worker.feature_spec import (
    PIPELINE_FILE,
    SPEC_FILE,
    FeatureSpec,
    bundle_path,
    read_metadata,
    verify_file,
)

log = logging.getLogger(__name__)


class TrainedVersionWarning(UserWarning):
    """The installed scikit-learn differs from the one the bundle was trained with."""


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle: the fitted pipeline with the spec, threshold and version it was stored with."""

    version: str
    spec: FeatureSpec
    metadata: dict[str, Any]
    pipeline: Any = field(repr=False)

    @property
    def threshold(self) -> float:
        """Return the decision threshold chosen at training time."""
        return float(self.metadata["threshold"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the probability of the positive class for each row of frame."""
        return np.asarray(self.pipeline.predict_proba(frame)[:, 1], dtype="float64")


def limit_native_threads(count: int) -> None:
    """Cap OpenMP/BLAS threads: busy-waiting pools of several processes on few cores stall for seconds."""
    threadpool_limits(limits=count)


def load_bundle(artifacts_dir: Path, version: str = "") -> ModelBundle:
    """Verify every file of a bundle, then unpickle its pipeline (pickle runs code: never unverified)."""
    directory = bundle_path(artifacts_dir, version)
    metadata = read_metadata(directory)
    spec_path = verify_file(directory, SPEC_FILE, metadata)
    pipeline_path = verify_file(directory, PIPELINE_FILE, metadata)
    trained_with = metadata.get("versions", {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        warnings.warn(
            f"bundle {directory.name} was trained with scikit-learn {trained_with}, "
            f"this process has {sklearn.__version__}: predictions may differ",
            TrainedVersionWarning,
            stacklevel=2,
        )
    pipeline = joblib.load(pipeline_path)
    spec = FeatureSpec.from_dict(json.loads(spec_path.read_text()))
    log.info("model bundle loaded", extra={"model_version": metadata["version"]})
    return ModelBundle(version=str(metadata["version"]), spec=spec, metadata=metadata, pipeline=pipeline)
