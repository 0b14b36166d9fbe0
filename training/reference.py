"""Build a bundle's monitoring reference from its training split and held-out calls; backfill old bundles."""

from __future__ import annotations

import argparse
import json
import os
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from core.feature_spec import (
    METADATA_FILE,
    BundleError,
    FeatureColumn,
    FeatureSpec,
    bundle_path,
    read_metadata,
    sha256_of,
)
from core.frames import build_frame
from core.monitoring.reference import (
    PROBA_BINS,
    REFERENCE_FILE,
    UNSEEN,
    FeatureReference,
    ModelReference,
)
from core.settings import get_settings
from training.data import DATA_DIR, build_training_table, held_out_split

# The positive-share range: how far the share of positive calls of SAMPLE_ROWS held-out rows strays.
SAMPLE_ROWS = 500
SAMPLES = 1_000
RANGE_PERCENTILES = (0.5, 99.5)
DECILES = np.arange(1, 10) / 10
SHARE_DIGITS = 6
EN_DASH = "\u2013"  # between the ends of a range in a label (an en dash)


def _shares(counts: ArrayLike) -> tuple[float, ...]:
    counts = np.asarray(counts, dtype="float64")
    return tuple(round(float(share), SHARE_DIGITS) for share in counts / counts.sum())


def _number(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else f"{edge:g}"


def bin_labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    """Return short labels for integer bins: "< 23", "23-29" with an en dash (or "23" alone), ..., "≥ 61"."""
    labels = [f"< {_number(edges[0])}"]
    for low, high in pairwise(edges):
        last = high - 1  # the bins hold integers: [23, 30) is 23 to 29
        labels.append(_number(low) if last == low else f"{_number(low)}{EN_DASH}{_number(last)}")
    labels.append(f"≥ {_number(edges[-1])}")
    return tuple(labels)


def category_reference(column: FeatureColumn, series: pd.Series) -> FeatureReference:
    """Return the share of each allowed value (booleans as "false", "true"), with UNSEEN at 0."""
    if column.kind == "boolean":
        values: tuple[str, ...] = ("false", "true")
        text = series.map({False: "false", True: "true"})
    else:
        values = tuple(sorted(column.allowed))
        text = series.astype(str)
    counts = text.value_counts().reindex(list(values), fill_value=0).to_numpy()
    return FeatureReference(
        name=column.name,
        kind="category",
        labels=(*values, UNSEEN),
        edges=(),
        shares=(*_shares(counts), 0.0),
    )


def integer_reference(column: FeatureColumn, series: pd.Series) -> FeatureReference:
    """Return decile bins of an integer column; repeated deciles and one at the minimum are dropped."""
    values = series.to_numpy(dtype="int64")
    deciles = np.unique(np.quantile(values, DECILES, method="inverted_cdf"))
    # A bin below the smallest training value would hold nothing at training time.
    edges = tuple(float(edge) for edge in deciles if edge > values.min())
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return FeatureReference(
        name=column.name, kind="bins", labels=bin_labels(edges), edges=edges, shares=_shares(counts)
    )


def build_reference(
    *,
    version: str,
    features: pd.DataFrame,
    spec: FeatureSpec,
    held_out_proba: ArrayLike,
    threshold: float,
    seed: int,
) -> ModelReference:
    """Return the reference of a bundle: features is its training split, held_out_proba its held-out calls."""
    proba = np.asarray(held_out_proba, dtype="float64")
    references = [
        integer_reference(column, features[column.name])
        if column.kind == "integer"
        else category_reference(column, features[column.name])
        for column in spec.columns
    ]
    bins = np.minimum((proba * PROBA_BINS).astype("int64"), PROBA_BINS - 1)
    positive = proba >= threshold
    rng = np.random.default_rng(seed)
    sample_size = min(SAMPLE_ROWS, len(proba))
    sampled = [
        positive[rng.choice(len(proba), size=sample_size, replace=False)].mean() for _ in range(SAMPLES)
    ]
    low, high = np.percentile(sampled, RANGE_PERCENTILES)
    return ModelReference(
        version=version,
        features={reference.name: reference for reference in references},
        proba_shares=_shares(np.bincount(bins, minlength=PROBA_BINS)),
        positive_share=round(float(positive.mean()), SHARE_DIGITS),
        positive_share_range=(round(float(low), SHARE_DIGITS), round(float(high), SHARE_DIGITS)),
        sample_rows=sample_size,
        training_rows=len(features),
        held_out_rows=len(proba),
    )


def write_reference(directory: Path, reference: ModelReference) -> str:
    """Write reference.json into a bundle directory; return its SHA-256 for the metadata's files."""
    path = directory / REFERENCE_FILE
    text = json.dumps(reference.to_dict(), indent=2, ensure_ascii=False)  # labels such as "≥ 22" stay legible
    path.write_text(text + "\n", encoding="utf-8")
    return sha256_of(path)


def backfill(artifacts_dir: Path, version: str, data_dir: Path = DATA_DIR) -> ModelReference:
    """Add a reference to an existing bundle: rebuild its split, predict the held-out part, record it."""
    # Imported here: train.py imports this module to write the reference of every new bundle.
    from training.train import HOLD_OUT, SEED
    from worker.bundle import load_bundle

    directory = bundle_path(artifacts_dir, version)
    bundle = load_bundle(artifacts_dir, version)
    raw, target, _ = build_training_table(data_dir, seed=SEED)
    frame = build_frame(raw.to_dict("records"), bundle.spec)  # type: ignore[arg-type]
    x_train, x_test, _, _ = held_out_split(frame, target, fraction=HOLD_OUT, seed=SEED)
    metadata: dict[str, Any] = read_metadata(directory)
    recorded = (metadata.get("data", {}).get("rows"), metadata.get("held_out", {}).get("rows"))
    if recorded != (len(frame), len(x_test)):
        raise BundleError(
            f"bundle {version} was trained on {recorded[0]} rows ({recorded[1]} held out); the data here "
            f"give {len(frame)} ({len(x_test)}): its reference cannot be rebuilt from them"
        )
    reference = build_reference(
        version=bundle.version,
        features=x_train,
        spec=bundle.spec,
        held_out_proba=bundle.predict_proba(x_test),
        threshold=bundle.threshold,
        seed=SEED,
    )
    metadata["files"][REFERENCE_FILE] = write_reference(directory, reference)
    metadata.pop("training_distributions", None)  # the reference replaces it
    # Written beside, then renamed: a reader sees the old metadata or the new one, never half of it.
    pending = directory / f".{METADATA_FILE}.{os.getpid()}"
    pending.write_text(json.dumps(metadata, indent=2) + "\n")
    pending.replace(directory / METADATA_FILE)
    return reference


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and backfill one bundle's reference."""
    parser = argparse.ArgumentParser(prog="python -m training.reference", description=__doc__)
    parser.add_argument("--version", required=True, help="the bundle version to backfill")
    parser.add_argument("--artifacts-dir", type=Path, default=get_settings().artifacts_dir)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    reference = backfill(args.artifacts_dir, args.version, args.data_dir)
    summary = {
        "bundle": str(bundle_path(args.artifacts_dir, args.version)),
        # metadata.json changed: a deployment that pins MODEL_SHA256 takes this one.
        "metadata_sha256": sha256_of(bundle_path(args.artifacts_dir, args.version) / METADATA_FILE),
        "positive_share": reference.positive_share,
        "positive_share_range": reference.positive_share_range,
        "features": {
            name: dict(zip(f.labels, f.shares, strict=True)) for name, f in reference.features.items()
        },
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
