"""The model's input contract: the feature spec of a bundle, and the checksum checks of its files.

Nothing here imports scikit-learn or pandas: the gateway validates requests with it and loads no model code.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CURRENT_POINTER = "current"
PIPELINE_FILE = "pipeline.joblib"
SPEC_FILE = "feature_spec.json"
METADATA_FILE = "metadata.json"
# Monitoring's training reference (core.monitoring.reference); bundles trained before it have none.
REFERENCE_FILE = "reference.json"

Kind = Literal["category", "boolean", "integer"]
# A bundle version names a folder inside the artifacts directory, never a path out of it.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"


class BundleError(RuntimeError):
    """A model bundle is missing, incomplete or does not match its recorded checksums."""


@dataclass(frozen=True)
class FeatureColumn:
    """One input column of the model: its kind, allowed values or inclusive bounds."""

    name: str
    kind: Kind
    allowed: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to feature_spec.json."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "category":
            out["allowed"] = list(self.allowed)
        if self.kind == "integer":
            out["minimum"], out["maximum"] = self.minimum, self.maximum
        return out


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered input contract shared by the request schema and the pipeline."""

    columns: tuple[FeatureColumn, ...]
    target: str

    @property
    def names(self) -> list[str]:
        """Return the column names in the order the pipeline expects."""
        return [column.name for column in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to feature_spec.json."""
        return {"target": self.target, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSpec:
        """Build a spec from its JSON form."""
        columns = tuple(
            FeatureColumn(
                name=c["name"],
                kind=c["kind"],
                allowed=tuple(c.get("allowed", ())),
                minimum=c.get("minimum"),
                maximum=c.get("maximum"),
            )
            for c in raw["columns"]
        )
        return cls(columns=columns, target=raw["target"])


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_version_name(version: str) -> bool:
    """Return whether version is an acceptable bundle version name (see VERSION_RULE)."""
    return VERSION_NAME.fullmatch(version) is not None and ".." not in version


def current_version(artifacts_dir: Path) -> str:
    """Return the version named in the artifacts directory's `current` pointer file."""
    pointer = artifacts_dir / CURRENT_POINTER
    try:
        version = pointer.read_text().strip()
    except FileNotFoundError as exc:
        raise BundleError(f"{pointer} is missing: train a model or set MODEL_VERSION") from exc
    if not version:
        raise BundleError(f"{pointer} is empty: it must name a bundle version")
    if not is_version_name(version):
        raise BundleError(f"{pointer} names {version[:80]!r}: a bundle version is {VERSION_RULE}")
    return version


def bundle_path(artifacts_dir: Path, version: str = "") -> Path:
    """Return the directory of one bundle version (the current one when version is empty)."""
    if version and not is_version_name(version):
        raise BundleError(f"bundle version {version[:80]!r} refused: a bundle version is {VERSION_RULE}")
    return artifacts_dir / (version or current_version(artifacts_dir))


def read_metadata(directory: Path, *, pinned_sha256: str = "") -> dict[str, Any]:
    """Read a bundle's metadata.json; with pinned_sha256 (MODEL_SHA256), refuse one of another SHA-256.

    The metadata holds every other file's checksum, so pinning it from outside the bundle's folder pins
    the whole bundle: the checksums beside the files catch corruption, the pin catches a swapped bundle.
    """
    path = directory / METADATA_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is missing") from exc
    if pinned_sha256:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != pinned_sha256.lower():
            raise BundleError(
                f"{path}: SHA-256 {actual} does not match MODEL_SHA256 {pinned_sha256}; "
                "refusing a bundle other than the pinned one"
            )
    metadata: dict[str, Any] = json.loads(raw)
    return metadata


def verify_file(directory: Path, name: str, metadata: dict[str, Any]) -> Path:
    """Check one bundle file against the SHA-256 recorded in the metadata; return its path."""
    path = directory / name
    expected = metadata.get("files", {}).get(name)
    if expected is None:
        raise BundleError(f"{path}: no checksum recorded in {METADATA_FILE}; refusing to load it")
    if not path.exists():
        raise BundleError(f"{path} is missing")
    actual = sha256_of(path)
    if actual != expected:
        raise BundleError(
            f"{path}: SHA-256 {actual} does not match {expected} recorded in {METADATA_FILE}; "
            "refusing to load a changed file"
        )
    return path


def verify_bundle(artifacts_dir: Path, version: str = "", *, pinned_sha256: str = "") -> str:
    """Check every file of a bundle against its recorded checksum without unpickling; return the version.

    The reference is checked when the metadata records one: older bundles have none and still serve.
    """
    directory = bundle_path(artifacts_dir, version)
    metadata = read_metadata(directory, pinned_sha256=pinned_sha256)
    optional = [REFERENCE_FILE] if REFERENCE_FILE in metadata.get("files", {}) else []
    for name in (SPEC_FILE, PIPELINE_FILE, *optional):
        verify_file(directory, name, metadata)
    return str(metadata["version"])


def load_feature_spec(artifacts_dir: Path, version: str = "", *, pinned_sha256: str = "") -> FeatureSpec:
    """Load the checksum-verified feature spec, without touching the pipeline."""
    directory = bundle_path(artifacts_dir, version)
    metadata = read_metadata(directory, pinned_sha256=pinned_sha256)
    spec_path = verify_file(directory, SPEC_FILE, metadata)
    return FeatureSpec.from_dict(json.loads(spec_path.read_text()))
