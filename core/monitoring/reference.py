"""What training saw, kept in the bundle for monitoring: per-feature reference bins, held-out calls, PSI.

Nothing here imports scikit-learn, pandas or numpy: the gateway reads a bundle's reference too.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from core.feature_spec import REFERENCE_FILE as REFERENCE_FILE  # named beside the other bundle files
from core.feature_spec import BundleError, verify_file

UNSEEN = "(unseen)"  # the extra category bucket: values training never saw
DRIFT_LINE = 0.2  # PSI above this: the feature's distribution moved (the usual rule of thumb)
PROBA_BINS = 20  # probability histogram: 20 equal bins over [0, 1]
# An empty bin on either side would make the PSI infinite: shares are floored at this.
SHARE_FLOOR = 1e-4

ReferenceKind = Literal["category", "bins"]


@dataclass(frozen=True)
class FeatureReference:
    """One feature as training saw it: its bins (categories or integer ranges) and each bin's share.

    category: labels are the training values sorted, then UNSEEN (booleans: "false", "true", UNSEEN).
    bins: inner edges e1 < ... < ek give the bins (-inf, e1), [e1, e2), ..., [ek, +inf), one label each.
    """

    name: str
    kind: ReferenceKind
    labels: tuple[str, ...]
    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("category", "bins"):
            raise ValueError(f"{self.name}: kind {self.kind!r} is neither 'category' nor 'bins'")
        if len(self.shares) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.labels)} labels but {len(self.shares)} shares")
        if self.kind == "category" and (self.edges or self.labels[-1:] != (UNSEEN,)):
            raise ValueError(f"{self.name}: a category reference has no edges and ends with {UNSEEN!r}")
        if self.kind == "bins" and len(self.labels) != len(self.edges) + 1:
            raise ValueError(f"{self.name}: {len(self.edges)} edges make {len(self.edges) + 1} bins")
        if any(low >= high for low, high in pairwise(self.edges)):
            raise ValueError(f"{self.name}: edges must increase strictly")

    def bin_counts(self, value_counts: Mapping[str, int]) -> list[int]:
        """Fold counts of raw values given as canonical text into this reference's bins.

        Canonical text: categories as they are, booleans "true"/"false", integers in decimal ("17").
        A category training never saw counts in UNSEEN; a non-numeric text is left out of integer bins.
        """
        counts = [0] * len(self.labels)
        if self.kind == "category":
            index = {label: i for i, label in enumerate(self.labels[:-1])}
            for value, count in value_counts.items():
                counts[index.get(value, len(self.labels) - 1)] += count
            return counts
        for value, count in value_counts.items():
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                counts[bisect_right(self.edges, number)] += count
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to reference.json."""
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "edges": list(self.edges),
            "shares": list(self.shares),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureReference:
        """Build a feature reference from its JSON form."""
        return cls(
            name=str(raw["name"]),
            kind=raw["kind"],
            labels=tuple(str(label) for label in raw["labels"]),
            edges=tuple(float(edge) for edge in raw["edges"]),
            shares=tuple(float(share) for share in raw["shares"]),
        )


@dataclass(frozen=True)
class ModelReference:
    """A bundle's training side of monitoring: its features' bins and what it called on held-out rows."""

    version: str
    features: dict[str, FeatureReference]  # in feature-spec order
    proba_shares: tuple[float, ...]  # PROBA_BINS shares of held-out predict_proba
    positive_share: float  # held-out share of positive calls at the bundle threshold
    # 0.5th and 99.5th percentile of that share over random samples of sample_rows held-out rows.
    positive_share_range: tuple[float, float]
    sample_rows: int
    training_rows: int
    held_out_rows: int

    def __post_init__(self) -> None:
        if len(self.proba_shares) != PROBA_BINS:
            raise ValueError(f"{len(self.proba_shares)} probability shares, not {PROBA_BINS}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to reference.json."""
        return {
            "version": self.version,
            "training_rows": self.training_rows,
            "held_out_rows": self.held_out_rows,
            "features": [feature.to_dict() for feature in self.features.values()],
            "proba_bins": PROBA_BINS,
            "proba_shares": list(self.proba_shares),
            "positive_share": self.positive_share,
            "positive_share_range": list(self.positive_share_range),
            "sample_rows": self.sample_rows,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelReference:
        """Build a reference from its JSON form."""
        features = [FeatureReference.from_dict(feature) for feature in raw["features"]]
        low, high = raw["positive_share_range"]
        return cls(
            version=str(raw["version"]),
            features={feature.name: feature for feature in features},
            proba_shares=tuple(float(share) for share in raw["proba_shares"]),
            positive_share=float(raw["positive_share"]),
            positive_share_range=(float(low), float(high)),
            sample_rows=int(raw["sample_rows"]),
            training_rows=int(raw["training_rows"]),
            held_out_rows=int(raw["held_out_rows"]),
        )


def proba_bin_counts(proba_counts: Mapping[int, int]) -> list[int]:
    """Counts per bin index 0..PROBA_BINS-1 (index = min(int(p*PROBA_BINS), PROBA_BINS-1)) as a full list."""
    counts = [0] * PROBA_BINS
    for index, count in proba_counts.items():
        counts[min(max(int(index), 0), PROBA_BINS - 1)] += count
    return counts


def psi(expected_shares: Sequence[float], actual_counts: Sequence[int]) -> float:
    """Population stability index: sum((a-e)*ln(a/e)) over bins.

    Shares are floored at 1e-4 so empty bins stay finite; no actual counts at all give 0.0.
    """
    if len(expected_shares) != len(actual_counts):
        raise ValueError(f"{len(expected_shares)} expected shares but {len(actual_counts)} actual counts")
    total = sum(actual_counts)
    if total == 0:
        return 0.0
    index = 0.0
    for expected, count in zip(expected_shares, actual_counts, strict=True):
        e = max(expected, SHARE_FLOOR)
        a = max(count / total, SHARE_FLOOR)
        index += (a - e) * math.log(a / e)
    return index


def load_reference(directory: Path, metadata: dict[str, Any]) -> ModelReference | None:
    """Return the bundle's reference, checksum-verified (BundleError when changed).

    None when the metadata records no reference.json: a bundle trained before references were kept.
    """
    if REFERENCE_FILE not in metadata.get("files", {}):
        return None
    path = verify_file(directory, REFERENCE_FILE, metadata)
    try:
        return ModelReference.from_dict(json.loads(path.read_bytes()))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: not a model reference ({exc})") from exc
