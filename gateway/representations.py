"""Response bodies: how a stored prediction is shown to clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from worker.storage import PredictionRecord


def iso(value: datetime | None) -> str | None:
    """Return a timestamp as ISO 8601, or None."""
    return value.isoformat() if value is not None else None


def result_url(observation_id: str) -> str:
    """Return the URL a client polls for one observation's result."""
    return url_for("predictions.get_prediction", observation_id=observation_id)


def prediction_body(record: PredictionRecord) -> dict[str, Any]:
    """Return the public view of a stored prediction."""
    body: dict[str, Any] = {
        "id": record.id,
        "status": record.status,
        "prediction": record.prediction,
        "proba": record.proba,
        "model_version": record.model_version,
        "received_at": iso(record.received_at),
        "predicted_at": iso(record.predicted_at),
        "true_class": record.true_class,
        "links": {"result": result_url(record.id)},
    }
    if record.failure_reason is not None:
        body["failure_reason"] = record.failure_reason
    return body
