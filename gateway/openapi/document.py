"""The OpenAPI document, built by apispec from the schemas that load requests and dump answers."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from gateway import responses
from gateway.monitoring.responses import MonitoringSchema
from gateway.openapi.answers import access_errors, answer, errors, json_answer, ndjson, ref
from gateway.openapi.parts import (
    ATOMIC_BATCHES,
    HEADERS,
    ID_DESCRIPTION,
    ID_FORMAT,
    ID_PATTERN,
    OVERVIEW,
    SCOPES,
    SECURITY_SCHEMES,
    batch_uploads,
)
from gateway.openapi.rollout import MODEL_REQUESTS, MODEL_RESPONSES, model_operations
from gateway.query_args import DURATION, BatchArgs, Duration, ResultFormatArgs, WaitArgs, WindowArgs
from worker.schemas import OutcomeFlag, RequestSchemas, StrictBoolean, StrictSchema

RESPONSE_SCHEMAS = {
    "Accepted": responses.AcceptedSchema,
    "Prediction": responses.PredictionSchema,
    "Rejection": responses.RejectionSchema,
    "BatchReceipt": responses.BatchReceiptSchema,
    "BatchProgress": responses.BatchProgressSchema,
    "BatchResult": responses.BatchResultSchema,
    "Error": responses.ErrorSchema,
    "Health": responses.HealthSchema,
    "Ready": responses.ReadySchema,
    "Performance": responses.PerformanceSchema,
    "Monitoring": MonitoringSchema,
}


def _path_parameter(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", **schema}}


def _request_field(self: Any, field: fields.Field[Any], **_: Any) -> dict[str, Any]:
    """Describe what the request fields accept beyond their JSON type (an apispec attribute function)."""
    if isinstance(field, OutcomeFlag):
        return {
            "oneOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}],
            "description": "true or false, or the integers 0 or 1 (written without a fraction)",
        }
    if isinstance(field, Duration):
        return {"pattern": f"^{DURATION.pattern}$"}
    if field.name == "id" and isinstance(field.parent, StrictSchema):
        return {"format": ID_FORMAT, "pattern": ID_PATTERN, "description": ID_DESCRIPTION}
    return {}


def build_openapi(schemas: RequestSchemas, model_version: str) -> dict[str, Any]:
    """Return the OpenAPI 3 document of the gateway."""
    spec = APISpec(
        title="Contraband predictions",
        version="1.0.0",
        openapi_version="3.0.3",
        info={"description": OVERVIEW.format(version=model_version)},
        plugins=[marshmallow_plugin := MarshmallowPlugin()],
    )
    marshmallow_plugin.map_to_openapi_type(StrictBoolean, "boolean", None)  # type: ignore[no-untyped-call]
    marshmallow_plugin.map_to_openapi_type(OutcomeFlag, None, None)  # type: ignore[no-untyped-call]
    marshmallow_plugin.map_to_openapi_type(Duration, "string", None)  # type: ignore[no-untyped-call]
    assert marshmallow_plugin.converter is not None  # set by APISpec
    marshmallow_plugin.converter.add_attribute_function(_request_field)  # type: ignore[no-untyped-call]
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    # The answers of no listed operation: a path not listed, a method a path lacks.
    spec.components.response("NotFound", json_answer(ref("Error"), "No such path"))
    spec.components.response(
        "MethodNotAllowed", json_answer(ref("Error"), "Not a method of the path", "Allow")
    )
    for name, schema in RESPONSE_SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    spec.components.schema("PredictionRequest", schema=schemas.prediction)
    spec.components.schema("FeedbackRequest", schema=schemas.feedback)
    for name, schema in (MODEL_RESPONSES | MODEL_REQUESTS).items():
        spec.components.schema(name, schema=schema)
    _add_operations(spec, columns=list(schemas.observation.fields))
    return spec.to_dict()


def _add_operations(spec: APISpec, *, columns: list[str]) -> None:
    """Add every operation, with every status it answers; columns: the feature columns, in order."""
    prediction, queued_prediction = ref("Prediction"), {"oneOf": [ref("Accepted"), ref("Prediction")]}
    observation_id, batch_id = _path_parameter("observation_id", minLength=1), _path_parameter("batch_id")
    results = {**ndjson(ref("BatchResult")), "text/csv": {"schema": {"type": "string"}}}

    def add(method: str, path: str, summary: str, answers: dict[str, Any], **more: Any) -> None:
        scope = SCOPES.get((method, path))
        if scope is None:
            more["security"] = []  # open to anyone
        else:
            more |= {"security": [{"bearerAuth": []}], "x-required-scope": scope}
            answers = answers | access_errors(with_rate_limit=scope == "submit")
        spec.path(path=path, operations={method: {"summary": summary, **more, "responses": answers}})

    def json_body(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": name}}}

    add(
        "post",
        "/predict",
        "Submit one observation; poll the result URL",
        {
            "202": json_answer(
                queued_prediction,
                "Accepted; a queued one resent gets its Prediction",
                "Location",
                "Retry-After",
            ),
            "200": json_answer(prediction, "Resent after its prediction finished: the result", "Location"),
            **errors(400, 409, 415, 422, 503),
        },
        requestBody=json_body("PredictionRequest"),
    )
    add(
        "get",
        "/predictions/{observation_id}",
        "Status and result of one observation; Retry-After while it is queued",
        {
            "200": json_answer(prediction, "Queued, done or failed", "Location", "Retry-After"),
            **errors(404, 422, 503, reasons={422: "The wait argument is not a number, 0 or more"}),
        },
        parameters=[observation_id, {"in": "query", "schema": WaitArgs}],
    )
    add(
        "post",
        "/update",
        "Send the true outcome of an observation (before or after its prediction)",
        {"200": json_answer(prediction, "Stored"), **errors(400, 404, 415, 422, 503)},
        requestBody=json_body("FeedbackRequest"),
    )
    add(
        "post",
        "/batches",
        "Submit many observations: valid items are accepted even when others are not",
        {
            "202": json_answer(ref("BatchReceipt"), "Valid items queued; the others listed", "Location"),
            **errors(
                400,
                415,
                422,
                503,
                reasons={
                    413: "The body is over the size limit, or holds more than BULK_MAX_ITEMS items",
                    422: "Not of the shape above, no item, or (atomic=true) an item not valid: "
                    "error.fields.rejected lists the first ones, error.fields.rejected_count counts them",
                },
            ),
        },
        parameters=[{"in": "query", "schema": BatchArgs}],
        requestBody={"required": True, "content": batch_uploads(columns)},
        description=ATOMIC_BATCHES,
    )
    add(
        "get",
        "/batches/{batch_id}",
        "Counts by status, progress, start and end of a batch",
        {
            "200": json_answer(ref("BatchProgress"), "Progress; Retry-After while running", "Retry-After"),
            **errors(404, 503),
        },
        parameters=[batch_id],
    )
    add(
        "get",
        "/batches/{batch_id}/results",
        "Every accepted item's result in submission order, streamed",
        {
            "200": answer("One BatchResult per line (NDJSON), or as CSV with a header row", results),
            **errors(404, 422, 503, reasons={422: "The format argument is not ndjson or csv"}),
        },
        parameters=[batch_id, {"in": "query", "schema": ResultFormatArgs}],
    )
    add(
        "get",
        "/batches/{batch_id}/rejections",
        "Every rejected item of a batch, in submission order, streamed",
        {"200": answer("One Rejection per line", ndjson(ref("Rejection"))), **errors(404, 503)},
        parameters=[batch_id],
    )
    add("get", "/health", "The process is alive", {"200": json_answer(ref("Health"), "Alive"), **errors()})
    add(
        "get",
        "/ready",
        "Database, broker and model bundle reachable",
        {
            "200": json_answer(ref("Ready"), "Ready"),
            **errors(503, reasons={503: "Not ready: error.checks says which check is down"}),
        },
    )
    add(
        "get",
        "/performance",
        "Live precision and recall on the true outcomes received, per model version",
        {"200": json_answer(ref("Performance"), "Per model version"), **errors(503)},
    )
    add(
        "get",
        "/monitoring",
        "The model over a window: drift per feature, probabilities and positive calls against training, live "
        "precision and recall per model version",
        {
            "200": json_answer(ref("Monitoring"), "Every figure beside its training side"),
            **errors(422, 503, reasons={422: "The window argument is not a duration such as 1h"}),
        },
        parameters=[{"in": "query", "schema": WindowArgs}],
    )
    add(
        "get",
        "/metrics",
        "Prometheus metrics, with the backlog read at scrape time",
        {
            "200": answer("Prometheus text", {"text/plain": {"schema": {"type": "string"}}}),
            **errors(),
        },
    )
    for method, path, summary, answers, more in model_operations():
        add(method, path, summary, answers, **more)
