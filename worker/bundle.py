"""Load a versioned model bundle: the checksum-verified pipeline with its spec and metadata."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from threadpoolctl import threadpool_limits

from core.feature_spec import (
    PIPELINE_FILE,
    REFERENCE_FILE,
    SPEC_FILE,
    FeatureSpec,
    bundle_path,
    read_metadata,
    verify_file,
)
from core.frames import build_frame
from worker.direct_encoding import (
    DirectEncoder,
    direct_encoders,
    probe_observations,
    unseen_category_probes,
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
    # The pipeline's preprocessing done directly on dicts, when load_bundle found it equivalent.
    encoder: DirectEncoder | None = field(default=None, repr=False)

    @property
    def threshold(self) -> float:
        """Return the decision threshold chosen at training time."""
        return float(self.metadata["threshold"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the probability of the positive class for each row of frame."""
        return _positive_class(self.pipeline.predict_proba(frame))

    def predict_observations(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Return the probability of the positive class for each validated observation."""
        if self.encoder is None:
            return self.predict_proba(build_frame(observations, self.spec))
        return _positive_class(self.encoder.predict_proba(observations))


def _positive_class(probabilities: Any) -> np.ndarray:
    return np.asarray(probabilities[:, 1], dtype="float64")


def limit_native_threads(count: int) -> None:
    """Cap OpenMP/BLAS threads: busy-waiting pools of several processes on few cores stall for seconds."""
    threadpool_limits(limits=count)


def load_bundle(artifacts_dir: Path, version: str = "", *, pinned_sha256: str = "") -> ModelBundle:
    """Verify every file of a bundle, then unpickle its pipeline (pickle runs code: never unverified)."""
    directory = bundle_path(artifacts_dir, version)
    metadata = read_metadata(directory, pinned_sha256=pinned_sha256)
    spec_path = verify_file(directory, SPEC_FILE, metadata)
    pipeline_path = verify_file(directory, PIPELINE_FILE, metadata)
    if REFERENCE_FILE in metadata.get("files", {}):
        verify_file(directory, REFERENCE_FILE, metadata)  # the monitor compares against it: same trust
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
    bundle = ModelBundle(version=str(metadata["version"]), spec=spec, metadata=metadata, pipeline=pipeline)
    encoder = _checked_direct_encoder(bundle)
    log.info(
        "model bundle loaded",
        extra={"model_version": bundle.version, "direct_encoding": encoder.kind if encoder else None},
    )
    return replace(bundle, encoder=encoder)


def _checked_direct_encoder(bundle: ModelBundle) -> DirectEncoder | None:
    """Return the fastest direct encoder that gives exactly the pipeline's probabilities on probe rows."""
    probes = probe_observations(bundle.spec) + unseen_category_probes(bundle.spec)
    through_pipeline = bundle.predict_observations(probes)  # bundle: no encoder yet
    for encoder in direct_encoders(bundle.pipeline):
        try:
            direct = replace(bundle, encoder=encoder).predict_observations(probes)
        except (TypeError, ValueError):  # a passed-through column that is not a number, say
            log.warning("direct encoding fails on probe rows", extra={"way": encoder.kind}, exc_info=True)
            continue
        if np.array_equal(direct, through_pipeline):
            return encoder
        log.warning("direct encoding disagrees with the pipeline", extra={"way": encoder.kind})
    return None
