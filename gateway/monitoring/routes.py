"""GET /monitoring and GET /performance: the model's figures over a window, and live precision and recall."""

from __future__ import annotations

from flask import Response, jsonify

from core.api_keys import ADMIN
from core.monitoring.measures import version_quality
from core.monitoring.monitored_model import measure_serving
from core.storage.monitoring import labelled_outcomes
from gateway.context import gateway_context
from gateway.declared_routes import ApiBlueprint
from gateway.monitoring.responses import monitoring_answer, performance_fields
from gateway.openapi.answers import errors, json_answer, ref
from gateway.query_args import WindowArgs, load_query, window_args
from gateway.responses import performance_schema

blueprint = ApiBlueprint("monitoring", __name__)


@blueprint.declare(
    "GET",
    "/monitoring",
    scope=ADMIN,
    summary="The model over a window: drift per feature, probabilities and positive calls against training, "
    "live precision and recall per model version",
    query=WindowArgs,
    answers={
        "200": json_answer(ref("Monitoring"), "Every figure beside its training side"),
        **errors(422, 503, reasons={422: "The window argument is not a duration such as 1h"}),
    },
)
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


@blueprint.declare(
    "GET",
    "/performance",
    scope=ADMIN,
    summary="Live precision and recall on the true outcomes received, per model version",
    answers={"200": json_answer(ref("Performance"), "Per model version"), **errors(503)},
)
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
