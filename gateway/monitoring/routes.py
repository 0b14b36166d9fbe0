"""GET /monitoring and GET /performance: the model's figures over a window, and live precision and recall."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from core.monitoring.measures import version_quality
from core.monitoring.monitored_model import measure_serving
from core.storage.monitoring import labelled_outcomes
from gateway.context import gateway_context
from gateway.monitoring.responses import monitoring_answer, performance_fields
from gateway.query_args import load_query, window_args
from gateway.responses import performance_schema

blueprint = Blueprint("monitoring", __name__)


@blueprint.get("/monitoring")
def model_monitoring() -> Response:
    """Return drift per feature, probabilities and positive calls against training, live quality per version.

    Measured now over the window (?window=1h; default MONITOR_WINDOW_S), as the periodic monitor measures it.
    """
    context = gateway_context()
    window_s = load_query(window_args)["window"]
    model = context.monitored_model()
    with context.engine.connect() as conn:
        report = measure_serving(
            conn=conn,
            model=model,
            settings=context.settings,
            window_s=window_s,
            reference_of=context.models.reference_of,
        )
    return jsonify(monitoring_answer(report, model.version))


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)


@blueprint.get("/performance")
def live_performance() -> Response:
    """Return precision and recall on the true outcomes received so far, per model version."""
    with gateway_context().engine.connect() as conn:
        outcomes = labelled_outcomes(conn=conn)
    versions = {
        quality.model_version: {
            **performance_fields(quality),
            "precision": _rounded(quality.precision),
            "recall": _rounded(quality.recall),
        }
        for quality in version_quality(outcomes)
    }
    return jsonify(performance_schema.dump({"model_versions": versions}))
