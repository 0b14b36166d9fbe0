"""The OpenAPI document, built by apispec from the routes' declarations and the schemas they name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from core.api_keys import SUBMIT
from gateway import responses
from gateway.batches.priority import BatchPriorityRequestSchema
from gateway.declared_routes import OPEN, Declaration
from gateway.monitoring.responses import MonitoringSchema
from gateway.openapi.answers import access_errors, json_answer, ref
from gateway.openapi.parts import HEADERS, ID_DESCRIPTION, ID_FORMAT, ID_PATTERN, OVERVIEW, SECURITY_SCHEMES
from gateway.query_args import DURATION, Duration
from gateway.rollout.schemas import (
    CanaryRequestSchema,
    ModelsSchema,
    RolloutChangeSchema,
    ShadowRequestSchema,
    StableRequestSchema,
)
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
    "Models": ModelsSchema,
    "RolloutChange": RolloutChangeSchema,
}
REQUEST_SCHEMAS = {
    "BatchPriorityRequest": BatchPriorityRequestSchema,
    "CanaryRequest": CanaryRequestSchema,
    "StableRequest": StableRequestSchema,
    "ShadowRequest": ShadowRequestSchema,
}
# What each converter of a route's rule matches, beyond a string: observation ids may hold slashes.
PATH_CONVERTERS: dict[str | None, dict[str, Any]] = {"observation_id": {"minLength": 1}, None: {}}


def _path_parameter(name: str, converter: str | None) -> dict[str, Any]:
    """Return a path parameter, its schema what the rule's converter matches (KeyError: one not described)."""
    schema = {"type": "string", **PATH_CONVERTERS[converter]}
    return {"name": name, "in": "path", "required": True, "schema": schema}


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


def build_openapi(
    schemas: RequestSchemas, model_version: str, routes: Iterable[Declaration]
) -> dict[str, Any]:
    """Return the OpenAPI 3 document of the gateway's declared routes."""
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
    for name, schema in REQUEST_SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    _add_operations(spec, routes, columns=list(schemas.observation.fields))
    return spec.to_dict()


def _add_operations(spec: APISpec, routes: Iterable[Declaration], *, columns: list[str]) -> None:
    """Add the operation of every documented route; columns: the feature columns, in order."""
    for route in routes:
        if route.documented:
            spec.path(path=route.path, operations={route.method.lower(): _operation(route, columns)})


def _operation(route: Declaration, columns: list[str]) -> dict[str, Any]:
    """Return a route's operation: words, parameters, body, who may call it and every status it answers."""
    operation: dict[str, Any] = {"summary": route.summary}
    if route.description is not None:
        operation["description"] = route.description
    parameters = [_path_parameter(name, converter) for name, converter in route.path_variables]
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    if route.uploads is not None:
        operation["requestBody"] = {"required": True, "content": route.uploads(columns)}
    answers = dict(route.answers)
    if route.scope is OPEN:
        operation["security"] = []  # open to anyone
    else:
        operation |= {"security": [{"bearerAuth": []}], "x-required-scope": route.scope}
        answers |= access_errors(with_rate_limit=route.scope == SUBMIT)
    return operation | {"responses": answers}
