"""Which bundle the model's monitoring compares with: the stable version of the stored rollout.

A promotion changes it without a restart: drift, the expected share of positive calls and the precision bar
follow the version that serves every id not in a canary, not the one the settings named at start.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from core.feature_spec import BundleError
from core.monitoring import ServingModel, serving_model
from core.serving_versions import serving_rollout, settings_version
from core.settings import Settings

log = logging.getLogger(__name__)


class ServingModels:
    """Each version's reference and precision bar, read once per process when monitoring first needs it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.default = serving_model(settings)  # the settings' version: a process that cannot read it stops
        self._models: dict[str, ServingModel] = {self.default.version: self.default}
        self._lock = threading.Lock()

    def of(self, version: str) -> ServingModel:
        """Return the version's model; the settings' one (logged) when its bundle cannot be read."""
        known = self._models.get(version)
        if known is not None:
            return known
        with self._lock:
            try:
                model = serving_model(self._settings, version)
            except (BundleError, OSError, ValueError, KeyError) as exc:
                log.error(
                    "monitoring: bundle unreadable; comparing with the settings' version",
                    extra={"model_version": version, "reason": str(exc)},
                )
                return self.default
            self._models[version] = model
        return model


def stable_model(*, engine: Engine, settings: Settings) -> ServingModel:
    """Read the stored rollout's stable version and its model (the monitor task's, once per run)."""
    version = serving_rollout(engine=engine, default_version=settings_version(settings)).stable_version
    return serving_model(settings, version)
