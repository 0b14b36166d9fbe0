"""The OpenAPI document, built with apispec from the same generated marshmallow schemas the API uses."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from worker.schemas import RequestSchemas

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
        plugins=[MarshmallowPlugin()],
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
                    "202": _json(PREDICTION, "Accepted (or a replay of a queued one); see Location"),
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
                    {"name": "observation_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": _json(PREDICTION, "The prediction"), **_errors(404, 503)},
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
    for path, summary in (
        ("/health", "The process is alive"),
        ("/ready", "Database, broker and model bundle reachable"),
    ):
        spec.path(
            path=path,
            operations={"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}},
        )
    return spec.to_dict()
