"""The OpenAPI document, built by apispec from the schemas that load requests and dump answers."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from gateway import responses
from gateway.query_args import BatchArgs, ResultFormatArgs, WaitArgs
from worker.schemas import OutcomeFlag, RequestSchemas, StrictBoolean


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(_ref("Error"), "Error envelope") for status in statuses}


RESPONSE_SCHEMAS = {
    "Accepted": responses.AcceptedSchema,
    "Prediction": responses.PredictionSchema,
    "BatchReceipt": responses.BatchReceiptSchema,
    "BatchProgress": responses.BatchProgressSchema,
    "BatchResult": responses.BatchResultSchema,
    "Error": responses.ErrorSchema,
    "Health": responses.HealthSchema,
    "Ready": responses.ReadySchema,
    "Performance": responses.PerformanceSchema,
}


def build_openapi(schemas: RequestSchemas, model_version: str) -> dict[str, Any]:
    """Return the OpenAPI 3 document of the gateway."""
    spec = APISpec(
        title="Contraband predictions",
        version="1.0.0",
        openapi_version="3.0.3",
        info={"description": f"Asynchronous predictions; model bundle {model_version}."},
        plugins=[marshmallow_plugin := MarshmallowPlugin()],
    )
    marshmallow_plugin.map_to_openapi_type(StrictBoolean, "boolean", None)  # type: ignore[no-untyped-call]
    # 0 and 1 are accepted too for an outcome.
    marshmallow_plugin.map_to_openapi_type(OutcomeFlag, "boolean", None)  # type: ignore[no-untyped-call]
    for name, schema in RESPONSE_SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    spec.components.schema("PredictionRequest", schema=schemas.prediction)
    spec.components.schema("FeedbackRequest", schema=schemas.feedback)
    _add_prediction_paths(spec)
    _add_bulk_paths(spec)
    for path, summary, answer, errors in (
        ("/health", "The process is alive", _json(_ref("Health"), "Alive"), ()),
        (
            "/ready",
            "Database, broker and model bundle reachable; 503 names what is down",
            _json(_ref("Ready"), "Ready"),
            (503,),
        ),
        (
            "/performance",
            "Live precision and recall on the true outcomes received, per model version",
            _json(_ref("Performance"), "Per model version"),
            (503,),
        ),
        (
            "/metrics",
            "Prometheus metrics, with the backlog read at scrape time",
            {"description": "Prometheus text exposition", "content": {"text/plain": {}}},
            (),
        ),
    ):
        responses_ = {"200": answer, **_errors(*errors)}
        spec.path(path=path, operations={"get": {"summary": summary, "responses": responses_}})
    return spec.to_dict()


def _add_prediction_paths(spec: APISpec) -> None:
    spec.path(
        path="/predict",
        operations={
            "post": {
                "summary": "Submit one observation; poll the result URL",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "PredictionRequest"}},
                },
                "responses": {
                    "202": _json(
                        {"oneOf": [_ref("Accepted"), _ref("Prediction")]},
                        "Accepted (a replay of a queued observation gets its Prediction)",
                    ),
                    "200": _json(_ref("Prediction"), "Replay of an observation already finished"),
                    **_errors(400, 409, 413, 415, 422, 503),
                },
            }
        },
    )
    spec.path(
        path="/predictions/{observation_id}",
        operations={
            "get": {
                "summary": "Status and result of one observation",
                "parameters": [
                    {"name": "observation_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"in": "query", "schema": WaitArgs},
                ],
                "responses": {"200": _json(_ref("Prediction"), "The prediction"), **_errors(404, 422, 503)},
            }
        },
    )
    spec.path(
        path="/update",
        operations={
            "post": {
                "summary": "Send the true outcome of an observation",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "FeedbackRequest"}},
                },
                "responses": {
                    "200": _json(_ref("Prediction"), "Stored"),
                    **_errors(400, 404, 413, 415, 422, 503),
                },
            }
        },
    )


def _add_bulk_paths(spec: APISpec) -> None:
    items = {"type": "object", "properties": {"id": {"type": "string"}, "observation": {"type": "object"}}}
    batch_id = {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}
    spec.path(
        path="/batches",
        operations={
            "post": {
                "summary": "Submit many observations: valid items are accepted even when others are not",
                "parameters": [{"in": "query", "schema": BatchArgs}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"observations": {"type": "array", "items": items}},
                            }
                        },
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "one item per line"}
                        },
                        "text/csv": {
                            "schema": {"type": "string", "description": "id and the feature columns"}
                        },
                    },
                },
                "responses": {
                    "202": _json(_ref("BatchReceipt"), "Accepted items are queued; rejected ones listed"),
                    **_errors(400, 413, 415, 422, 503),
                },
            }
        },
    )
    spec.path(
        path="/batches/{batch_id}",
        operations={
            "get": {
                "summary": "Counts by status, progress, start and end of a batch",
                "parameters": [batch_id],
                "responses": {"200": _json(_ref("BatchProgress"), "Progress"), **_errors(404, 503)},
            }
        },
    )
    spec.path(
        path="/batches/{batch_id}/results",
        operations={
            "get": {
                "summary": "Every accepted item's result in submission order, streamed",
                "parameters": [batch_id, {"in": "query", "schema": ResultFormatArgs}],
                "responses": {
                    "200": {
                        "description": "One BatchResult per line (NDJSON), or the same columns as CSV",
                        "content": {
                            "application/x-ndjson": {"schema": _ref("BatchResult")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(404, 422, 503),
                },
            }
        },
    )
