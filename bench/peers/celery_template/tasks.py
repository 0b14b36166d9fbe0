"""The template's one task: predict one observation with the bundle, loaded once per worker process."""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import shared_task

from core.settings import get_settings
from worker.bundle import ModelBundle, limit_native_threads, load_bundle


@cache
def loaded_bundle() -> ModelBundle:
    """Load the bundle the first time a process predicts (Celery's "Instantiation": once per process)."""
    settings = get_settings()
    limit_native_threads(settings.model_threads)  # the cap the service's workers run with
    return load_bundle(settings.artifacts_dir)


@shared_task(ignore_result=False)  # type: ignore[untyped-decorator]  # Celery: untyped
def predict(observation: dict[str, Any]) -> dict[str, Any]:
    """Return the probability and the decision for one observation."""
    bundle = loaded_bundle()
    proba = float(bundle.predict_observations([observation])[0])
    return {"proba": proba, "prediction": proba >= bundle.threshold}
