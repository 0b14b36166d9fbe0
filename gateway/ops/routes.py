"""Operator endpoints: liveness, readiness, metrics, and the OpenAPI document (its page: gateway.openapi)."""

from __future__ import annotations

import logging

from flask import Response, current_app, jsonify
from prometheus_client.registry import Collector

from core.feature_spec import verify_bundle
from core.storage.engine import ping
from gateway.context import gateway_context
from gateway.declared_routes import OPEN, ApiBlueprint, declared_routes
from gateway.errors import ApiError, error_response
from gateway.metrics import ServiceStateCollector, render_metrics
from gateway.monitoring.model_metrics import ModelStateCollector, RolloutCollector
from gateway.openapi.answers import answer, errors, json_answer, ref
from gateway.openapi.document import build_openapi
from gateway.responses import health_schema, ready_schema

log = logging.getLogger(__name__)
blueprint = ApiBlueprint("ops", __name__)


@blueprint.declare(
    "GET",
    "/health",
    scope=OPEN,
    summary="The process is alive",
    answers={"200": json_answer(ref("Health"), "Alive"), **errors()},
)
def health() -> Response:
    """Answer while the process lives."""
    return jsonify(health_schema.dump({}))


def _check_database() -> None:
    with gateway_context().engine.connect() as conn:
        ping(conn=conn)


def _check_broker() -> None:
    with gateway_context().celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1, timeout=1)


def _check_model_bundle() -> None:
    """Verify the checksums of the stable version (the settings' one while no rollout is stored).

    Not the canary's: a broken canary only delays the ids it took (GET /models says why); taking every
    gateway out of its load balancer for it would stop them all.
    """
    context = gateway_context()
    stable = context.rollout.current().stable_version
    pinned = context.rollout.pinned_sha256(stable)
    verify_bundle(context.settings.artifacts_dir, stable, pinned_sha256=pinned)


@blueprint.declare(
    "GET",
    "/ready",
    scope=OPEN,
    summary="Database, broker and model bundle reachable",
    answers={
        "200": json_answer(ref("Ready"), "Ready"),
        **errors(503, reasons={503: "Not ready: error.checks says which check is down"}),
    },
)
def ready() -> Response:
    """Answer 200 when database, broker and model bundle are reachable; 503 naming what is down.

    checks.backlog says "shedding" while submissions are refused for the backlog: the gateway is still ready
    (results are read, labels taken), so it is not a reason to take it out of a load balancer.
    """
    checks = {}
    for name, check in (
        ("database", _check_database),
        ("broker", _check_broker),
        ("model_bundle", _check_model_bundle),
    ):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
            checks[name] = "down"
    down = [name for name, state in checks.items() if state != "ok"]
    checks["backlog"] = "shedding" if gateway_context().backlog_guard.refusal() else "ok"
    if down:
        return error_response(ApiError(503, f"Not ready: {', '.join(down)} down.", checks=checks))
    return jsonify(ready_schema.dump({"checks": checks}))


@blueprint.declare(
    "GET",
    "/metrics",
    scope=OPEN,
    summary="Prometheus metrics, with the backlog read at scrape time",
    answers={
        "200": answer("Prometheus text", {"text/plain": {"schema": {"type": "string"}}}),
        **errors(),
    },
)
def metrics() -> Response:
    """Expose Prometheus metrics."""
    context = gateway_context()
    state = ServiceStateCollector(engine=context.engine, celery=context.celery, settings=context.settings)
    model = ModelStateCollector(engine=context.engine, model=context.monitored_model())
    collectors: list[Collector] = [state, model]
    rollout = context.rollout.last_reading()
    if rollout is not None:  # never read and the database down: the rest still answers
        collectors.append(RolloutCollector(rollout))
    body, content_type = render_metrics(context.settings.prometheus_multiproc_dir, *collectors)
    return Response(body, content_type=content_type)


@blueprint.declare("GET", "/openapi.json", scope=OPEN, documented=False)
def openapi() -> Response:
    """Return the OpenAPI document."""
    context = gateway_context()
    rollout = context.rollout.last_reading()
    # Never read yet, the database down: the description is still served.
    stable = context.rollout.contract(rollout.stable_version if rollout else context.rollout.default_version)
    return jsonify(build_openapi(stable.schemas, stable.version, declared_routes(current_app)))
