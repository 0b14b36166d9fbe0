"""The template's Flask app: validate, enqueue one Celery task per observation, read results by task id.

As Flask's examples/celery builds it: create_app() with the Celery settings in code and FLASK_* environment
overrides (FLASK_CELERY__broker_url, FLASK_CELERY__result_backend), celery_init_app() wiring Celery from
that config, and a result route that reads AsyncResult from the Redis result backend.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.result import AsyncResult
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from marshmallow import ValidationError

from bench.peers.celery_template.tasks import predict
from core.feature_spec import load_feature_spec
from core.settings import get_settings
from worker.schemas import request_schemas

views = Blueprint("template", __name__)


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app from the Flask config, its tasks run inside the Flask app context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app() -> Flask:
    """Build the template app: Celery on Redis (broker and result backend), the feature spec's schemas."""
    app = Flask(__name__)
    app.config.from_mapping(
        CELERY={
            "broker_url": "redis://127.0.0.1:6379/12",
            "result_backend": "redis://127.0.0.1:6379/13",
            "task_ignore_result": True,
        }
    )
    app.config.from_prefixed_env()
    # The same request checks as the service and the baseline: the comparison is about the queue, not input.
    app.extensions["schemas"] = request_schemas(load_feature_spec(get_settings().artifacts_dir))
    celery_init_app(app)
    app.register_blueprint(views)
    return app


@views.post("/predict")
def submit_prediction() -> tuple[Response, int]:
    """Validate the observation and enqueue one task for it; answer with the id to poll."""
    try:
        body = current_app.extensions["schemas"].load_prediction(request.get_json())
    except ValidationError as error:
        return jsonify({"error": error.messages}), 422
    result = predict.delay(body["observation"])
    return jsonify({"result_id": result.id}), 202


@views.get("/result/<task_id>")
def task_result(task_id: str) -> Response:
    """Return whether the task is done and, once it is, its prediction."""
    result = AsyncResult(task_id)
    ready = result.ready()
    return jsonify(
        {
            "ready": ready,
            "successful": result.successful() if ready else None,
            "value": result.result if ready else None,
        }
    )
