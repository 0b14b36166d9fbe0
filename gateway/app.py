"""The Flask app factory of the gateway: HTTP only, no model loaded to accept requests."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from werkzeug.routing import PathConverter

from core.celery_app import create_celery_app
from core.feature_spec import load_feature_spec
from core.monitoring.monitored_model import ServingModels
from core.rollout.serving_versions import settings_version
from core.settings import Settings, get_settings
from core.storage.engine import make_engine
from gateway.access.checks import install_access_control
from gateway.batches import routes as batches
from gateway.context import EXTENSION, GatewayContext
from gateway.dashboard import routes as dashboard
from gateway.declared_routes import register_declared
from gateway.errors import ApiError, register_error_handlers
from gateway.metrics import LATENCY, PUBLISH_FAILURES, REQUESTS, THREAD_WAIT
from gateway.monitoring import routes as monitoring
from gateway.openapi import routes as docs
from gateway.ops import routes as ops
from gateway.predictions import routes as predictions
from gateway.predictions.backlog_guard import BacklogGuard
from gateway.rollout import routes as rollout
from gateway.rollout.view import RolloutView, VersionSchemas
from gateway.server.header_checks import PROCEED_HEADER, answer_from_headers
from gateway.server.long_polls import BODY_OVER_LIMIT, HANDED_ON_AT, HOLD_HEADER, scope_of
from gateway.server.publisher import BackgroundPublisher
from gateway.server.security_headers import add_security_headers
from worker.schemas import request_schemas

log = logging.getLogger("gateway.access")  # the request log, one line per answer
REQUEST_ID_HEADER = "X-Request-ID"
# A client's request id is kept only if it is up to 64 of [A-Za-z0-9._-] (a UUID, a hex or ULID id, a
# trace id): it is echoed in a header and written to every log line, so nothing that could forge a log
# field, break a header or flood the logs; any other value is replaced by an id of our own.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Each route declared once in its package (gateway.declared_routes): routing, access and the document read it.
BLUEPRINTS = (
    predictions.blueprint,
    batches.blueprint,
    ops.blueprint,
    docs.blueprint,
    monitoring.blueprint,
    rollout.blueprint,
    dashboard.blueprint,
)


class ObservationIdConverter(PathConverter):
    """Match the rest of the path, slashes included, as one observation id."""

    regex = ".+?"
    part_isolating = False  # the match may span several path segments


class RequestIdFilter(logging.Filter):
    """Stamp every log record written while serving a request with that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and not hasattr(record, "request_id"):
            record.request_id = g.get("request_id")
        return True


def new_request_id() -> str:
    """Return a request id of the gateway's own: 32 hex digits."""
    return uuid.uuid4().hex


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway; config may carry SETTINGS (a Settings object) and Flask config overrides."""
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or get_settings()
    app = Flask(__name__, static_folder=None)  # the dashboard and docs serve their own files
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, **config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Ids may contain slashes, even leading ones: "/predictions//a" is the id "/a", not "a".
    app.url_map.merge_slashes = False
    app.url_map.converters["observation_id"] = ObservationIdConverter

    version = settings_version(settings)
    spec = load_feature_spec(settings.artifacts_dir, version, pinned_sha256=settings.model_sha256)
    default = VersionSchemas(version=version, spec=spec, schemas=request_schemas(spec))
    celery = create_celery_app(settings)
    # One pooled connection per Flask thread: fewer, and a loaded gateway opened ~30 connections a second.
    engine = make_engine(settings.database_url, pool_size=settings.gateway_threads)
    app.extensions[EXTENSION] = GatewayContext(
        settings=settings,
        engine=engine,
        celery=celery,
        # Single submissions travel on the interactive lane.
        publisher=BackgroundPublisher(
            celery, queue_name=settings.queue_name, on_failure=PUBLISH_FAILURES.inc
        ),
        schemas=default.schemas,
        backlog_guard=BacklogGuard(engine, settings),
        rollout=RolloutView(engine, settings, default),
        models=ServingModels(settings),
    )
    register_declared(app, BLUEPRINTS)
    register_error_handlers(app)
    app.before_request(_start_request)
    app.before_request(_refuse_body_over_limit)
    install_access_control(app, settings, engine)  # its hook runs after these two: id set, 413 first
    app.before_request(answer_from_headers)  # after access: a key that may not send the body is refused
    app.after_request(_finish_request)
    app.after_request(add_security_headers)
    return app


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if CLIENT_REQUEST_ID.fullmatch(incoming) else new_request_id()
    g.flask_started = time.perf_counter()
    # Counted from when the front handed the request on: a wait for a free Flask thread is latency too.
    g.started = scope_of(request.environ).get(HANDED_ON_AT, g.flask_started)


def _refuse_body_over_limit() -> None:
    if scope_of(request.environ).get(BODY_OVER_LIMIT):
        # The front stopped reading it at the limit; closing the connection drops the rest unread.
        raise ApiError(413, "The request body is too large.", close_connection=True)


def _finish_request(response: Response) -> Response:
    if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
        # Flask's automatic answer: the Allow header is the content, so no body and no HTML type.
        response.status_code = 204
        del response.headers["Content-Type"]
    if HOLD_HEADER in response.headers or PROCEED_HEADER in response.headers:
        return response  # the front asks again (after a hold, or with the body): that answer is counted
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    REQUESTS.labels(method=request.method, endpoint=endpoint, status=response.status_code).inc()
    LATENCY.labels(endpoint=endpoint).observe(elapsed)
    if HANDED_ON_AT in scope_of(request.environ) and "flask_started" in g:
        THREAD_WAIT.labels(endpoint=endpoint).observe(g.flask_started - g.started)
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    log.info(
        "request",
        extra={
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round(elapsed * 1000, 2),  # as the latency histogram: the wait for a thread included
            "api_key": g.get("api_key"),
        },
    )
    return response
