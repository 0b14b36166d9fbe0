"""The OpenAPI document, built with apispec from the same generated marshmallow schemas the API uses."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from worker.schemas import OutcomeFlag, RequestSchemas, StrictBoolean

ERROR = {"$ref": "#/components/schemas/Error"}
PREDICTION = {"$ref": "#/components/schemas/Prediction"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(ERROR, "Error envelope") for status in statuses}


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
    spec.components.schema(
        "Accepted",
        {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": ["queued"]},
                "links": {"type": "object", "properties": {"result": {"type": "string"}}},
            },
        },
    )
    spec.components.schema("PredictionRequest", schema=schemas.prediction)
    spec.components.schema("FeedbackRequest", schema=schemas.feedback)
    spec.components.schema(
        "Prediction",
        {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": ["queued", "done", "failed"]},
                "prediction": {"type": "boolean", "nullable": True},
                "proba": {"type": "number", "nullable": True},
                "model_version": {"type": "string", "nullable": True},
                "received_at": {"type": "string", "format": "date-time"},
                "predicted_at": {"type": "string", "format": "date-time", "nullable": True},
                "true_class": {"type": "boolean", "nullable": True},
                "failure_reason": {"type": "string"},
                "links": {"type": "object", "properties": {"result": {"type": "string"}}},
            },
        },
    )
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "fields": {"type": "object", "description": "Every field error, keyed by field"},
                        "links": {"type": "object"},
                        "checks": {"type": "object", "description": "/ready: each check, ok or down"},
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
    )
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
                    "202": {
                        "description": "Accepted (a replay of a queued observation gets its Prediction)",
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [{"$ref": "#/components/schemas/Accepted"}, PREDICTION]}
                            }
                        },
                    },
                    "200": _json(PREDICTION, "Replay of an observation already finished"),
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
                    {
                        "name": "wait",
                        "in": "query",
                        "description": "Hold the request up to this many seconds (capped) for the result",
                        "schema": {"type": "number", "minimum": 0},
                    },
                ],
                "responses": {"200": _json(PREDICTION, "The prediction"), **_errors(404, 422, 503)},
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
                    "200": _json(PREDICTION, "Stored"),
                    **_errors(400, 404, 413, 415, 422, 503),
                },
            }
        },
    )
    _add_bulk_paths(spec)
    for path, summary, errors in (
        ("/health", "The process is alive", ()),
        ("/ready", "Database, broker and model bundle reachable; 503 names what is down", (503,)),
        (
            "/performance",
            "Live precision and recall on the true outcomes received, per model version",
            (503,),
        ),
        ("/metrics", "Prometheus metrics, with the backlog read at scrape time", ()),
    ):
        responses = {"200": {"description": "OK"}, **_errors(*errors)}
        spec.path(path=path, operations={"get": {"summary": summary, "responses": responses}})
    return spec.to_dict()


def _add_bulk_paths(spec: APISpec) -> None:
    items = {"type": "object", "properties": {"id": {"type": "string"}, "observation": {"type": "object"}}}
    batch_id = [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    spec.path(
        path="/batches",
        operations={
            "post": {
                "summary": "Submit many observations: valid items are accepted even when others are not",
                "parameters": [
                    {
                        "name": "atomic",
                        "in": "query",
                        "schema": {"type": "boolean"},
                        "description": "all or nothing",
                    }
                ],
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
                    "202": {
                        "description": "{batch_id, items, accepted, rejected: [{index, id, errors}], links}"
                    },
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
                "parameters": batch_id,
                "responses": {"200": {"description": "Progress"}, **_errors(404, 503)},
            }
        },
    )
    spec.path(
        path="/batches/{batch_id}/results",
        operations={
            "get": {
                "summary": "Every accepted item's result in submission order, streamed",
                "parameters": [
                    *batch_id,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["ndjson", "csv"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Results",
                        "content": {"application/x-ndjson": {}, "text/csv": {}},
                    },
                    **_errors(404, 422, 503),
                },
            }
        },
    )
