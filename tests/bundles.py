"""Bundle versions for tests: copies of the committed bundle under new names, changed as a scenario needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.feature_spec import METADATA_FILE, REFERENCE_FILE, SPEC_FILE, current_version, sha256_of
from core.settings import get_settings


def scratch_artifacts(folder: Path) -> Path:
    """Copy the committed current bundle into folder, with a current pointer naming it; return folder."""
    committed = get_settings().artifacts_dir
    version = current_version(committed)
    shutil.copytree(committed / version, folder / version)
    (folder / "current").write_text(version)
    return folder


def add_version(
    artifacts: Path, version: str, *, metadata_version: str | None = None, **metadata: Any
) -> Path:
    """Copy the current bundle to a folder named version, its metadata naming metadata_version (default:
    version) and holding the other keys given, its reference naming version; the checksums it records are
    those of the copy's files, so they verify."""
    directory = artifacts / version
    shutil.copytree(artifacts / current_version(artifacts), directory)
    recorded = json.loads((directory / METADATA_FILE).read_text())
    recorded.update(metadata, version=metadata_version or version)
    if REFERENCE_FILE in recorded["files"]:  # the reference names its bundle's version too
        reference = json.loads((directory / REFERENCE_FILE).read_text())
        (directory / REFERENCE_FILE).write_text(json.dumps(reference | {"version": version}))
        recorded["files"][REFERENCE_FILE] = sha256_of(directory / REFERENCE_FILE)
    (directory / METADATA_FILE).write_text(json.dumps(recorded, indent=2))
    return directory


def flip_one_byte(path: Path) -> bytes:
    """Change one byte in the middle of path; return the original contents."""
    original = path.read_bytes()
    middle = len(original) // 2
    path.write_bytes(original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :])
    return original


def change_spec_column(directory: Path, name: str, **changes: Any) -> None:
    """Change one column of a bundle's feature spec (its bounds, say) and record the spec's new checksum."""
    spec = json.loads((directory / SPEC_FILE).read_text())
    (column,) = [c for c in spec["columns"] if c["name"] == name]
    column.update(changes)
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["files"][SPEC_FILE] = sha256_of(directory / SPEC_FILE)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
