"""The bundles on disk, each summed up from its metadata, and whether one may serve: checksums, precision.

No model code: the files are checked against their recorded SHA-256, never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.feature_spec import METADATA_FILE, BundleError, is_version_name, read_metadata, verify_bundle
from core.monitoring.measures import DEFAULT_PRECISION_BAR


class BundleRefused(BundleError):
    """A bundle version may not serve: not on disk, checksums not matching, or precision under its bar."""

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model bundle {version!r} refused: {reason}")
        self.version = version
        self.reason = reason


@dataclass(frozen=True)
class BundleSummary:
    """One bundle on disk, as an operator chooses among them; problem: why it may not serve (None: it may)."""

    version: str
    created_at: str | None
    classifier: str | None
    threshold: float | None
    precision_bar: float | None
    held_out_precision: float | None
    held_out_recall: float | None
    held_out_roc_auc: float | None
    problem: str | None


def bundle_versions(artifacts_dir: Path) -> list[str]:
    """Return the version folders of the artifacts directory that hold a metadata.json, sorted."""
    if not artifacts_dir.is_dir():
        return []
    return sorted(
        path.name
        for path in artifacts_dir.iterdir()
        if path.is_dir() and is_version_name(path.name) and (path / METADATA_FILE).is_file()
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _held_out_metrics(metadata: dict[str, Any]) -> dict[str, Any]:
    held_out = metadata.get("held_out")
    metrics = held_out.get("metrics") if isinstance(held_out, dict) else None
    return metrics if isinstance(metrics, dict) else {}


def check_servable(artifacts_dir: Path, version: str, *, pinned_sha256: str = "") -> dict[str, Any]:
    """Return the metadata of a bundle that may serve; raise BundleRefused saying why one may not.

    It may when every file matches its recorded SHA-256 (and the pin, if any), its metadata names this
    version, and its recorded held-out precision is at least its precision bar.
    """
    if not is_version_name(version) or not (artifacts_dir / version / METADATA_FILE).is_file():
        raise BundleRefused(version, f"no such bundle in the artifacts directory ({artifacts_dir.name})")
    try:
        named = verify_bundle(artifacts_dir, version, pinned_sha256=pinned_sha256)
        metadata = read_metadata(artifacts_dir / version, pinned_sha256=pinned_sha256)
    except BundleError as exc:
        raise BundleRefused(version, f"checksum verification failed: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:  # metadata.json that is not JSON, or lacks a field
        raise BundleRefused(version, f"its {METADATA_FILE} cannot be read ({type(exc).__name__})") from None
    if named != version:
        raise BundleRefused(version, f"its {METADATA_FILE} names version {named!r}")
    precision = _number(_held_out_metrics(metadata).get("precision"))
    bar = _number(metadata.get("precision_bar", DEFAULT_PRECISION_BAR))
    if precision is None or bar is None:
        raise BundleRefused(version, f"its {METADATA_FILE} records no held-out precision or precision bar")
    if precision < bar:
        raise BundleRefused(
            version, f"held-out precision {precision:.4f} is below its precision bar {bar:.4f}"
        )
    return metadata


def summarize(artifacts_dir: Path, version: str, *, pinned_sha256: str = "") -> BundleSummary:
    """Return what an operator needs to choose this bundle, and why it may not serve, if it may not."""
    problem = None
    try:
        metadata = check_servable(artifacts_dir, version, pinned_sha256=pinned_sha256)
    except BundleRefused as exc:
        problem = exc.reason
        try:
            metadata = json.loads((artifacts_dir / version / METADATA_FILE).read_bytes())
        except (OSError, ValueError):
            metadata = {}
        if not isinstance(metadata, dict):
            metadata = {}
    metrics = _held_out_metrics(metadata)
    created, classifier = metadata.get("created_at"), metadata.get("classifier")
    return BundleSummary(
        version=version,
        created_at=created if isinstance(created, str) else None,
        classifier=classifier if isinstance(classifier, str) else None,
        threshold=_number(metadata.get("threshold")),
        precision_bar=_number(metadata.get("precision_bar", DEFAULT_PRECISION_BAR)),
        held_out_precision=_number(metrics.get("precision")),
        held_out_recall=_number(metrics.get("recall")),
        held_out_roc_auc=_number(metrics.get("roc_auc")),
        problem=problem,
    )
