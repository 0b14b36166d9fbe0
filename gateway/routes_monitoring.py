"""GET /monitoring: the model's figures over a window, for data scientists comparing model versions."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from core.monitored_model import measure_serving
from gateway.context import gateway_context
from gateway.monitoring_responses import monitoring_answer
from gateway.query_args import load_query, window_args

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
