"""Which bundle the model's monitoring compares with: the stable version of the stored rollout.

A promotion changes it without a restart: drift, the expected share of positive calls and the precision bar
follow the version that serves every id not in a canary, not the one the settings named at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from core.feature_spec import BundleError, bundle_path, read_metadata
from core.monitoring.measures import DEFAULT_PRECISION_BAR, MonitoringReport, measure
from core.monitoring.reference import ModelReference, load_reference
from core.rollout.serving_versions import pinned_versions, serving_rollout, settings_version
from core.settings import Settings

log = logging.getLogger(__name__)
# A bundle found unreadable is read again after this long.
RETRY_S = 30.0


@dataclass(frozen=True)
class ServingModel:
    """What monitoring compares with, read from the serving bundle: its reference (if it has one) and bar."""

    version: str
    reference: ModelReference | None
    precision_bar: float


def serving_model(settings: Settings, version: str = "") -> ServingModel:
    """Read a bundle's metadata and reference (checksum-verified; no model code is loaded).

    version: default the settings' (MODEL_VERSION or artifacts/current), which MODEL_SHA256 pins.
    """
    version = version or settings_version(settings)
    pinned = pinned_versions(settings, settings_version(settings)).get(version, "")
    directory = bundle_path(settings.artifacts_dir, version)
    metadata = read_metadata(directory, pinned_sha256=pinned)
    return ServingModel(
        version=str(metadata["version"]),
        reference=load_reference(directory, metadata),
        precision_bar=float(metadata.get("precision_bar", DEFAULT_PRECISION_BAR)),
    )


def measure_serving(
    *,
    conn: Connection,
    model: ServingModel,
    settings: Settings,
    window_s: int | None = None,
    count_features: bool = True,
    reference_of: Callable[[str], ModelReference | None] | None = None,
) -> MonitoringReport:
    """Measure against the serving bundle over window_s (default MONITOR_WINDOW_S), the settings' minimum.

    reference_of: the other versions' references, each version's calls set beside its own (see measures).
    """
    return measure(
        reference_of=reference_of,
        count_features=count_features,
        conn=conn,
        reference=model.reference,
        window_s=window_s or settings.monitor_window_s,
        min_observations=settings.monitor_min_observations,
        precision_bar=model.precision_bar,
    )


class ServingModels:
    """Each version's reference and precision bar, read once per process when monitoring first needs it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.default = serving_model(settings)  # the settings' version: a process that cannot read it stops
        self._models: dict[str, ServingModel] = {self.default.version: self.default}
        self._failures: dict[str, float] = {}  # version -> when its bundle was last found unreadable
        self._lock = threading.Lock()

    def of(self, version: str) -> ServingModel:
        """Return the version's model; the settings' one (logged) when its bundle cannot be read."""
        return self._read(version) or self.default

    def reference_of(self, version: str) -> ModelReference | None:
        """Return the version's reference distributions (None: it has none, or its bundle is unreadable)."""
        model = self._read(version)
        return model.reference if model is not None else None

    def _read(self, version: str) -> ServingModel | None:
        known = self._models.get(version)
        if known is not None:
            return known
        with self._lock:
            failed_at = self._failures.get(version)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_S:
                return None  # read again after RETRY_S, not at every scrape
            try:
                model = serving_model(self._settings, version)
            except (BundleError, OSError, ValueError, KeyError) as exc:
                self._failures[version] = time.monotonic()
                log.error(
                    "monitoring: bundle unreadable", extra={"model_version": version, "reason": str(exc)}
                )
                return None
            self._models[version] = model
            self._failures.pop(version, None)
        return model


def stable_model(*, engine: Engine, settings: Settings) -> ServingModel:
    """Read the stored rollout's stable version and its model (the monitor task's, once per run)."""
    version = serving_rollout(engine=engine, default_version=settings_version(settings)).stable_version
    return serving_model(settings, version)
