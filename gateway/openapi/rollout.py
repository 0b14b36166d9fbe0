"""The OpenAPI operations of model rollout (/models): their bodies, answers and errors."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from gateway.openapi.answers import errors, json_answer, ref
from gateway.rollout.schemas import (
    CanaryRequestSchema,
    ModelsSchema,
    RolloutChangeSchema,
    ShadowRequestSchema,
    StableRequestSchema,
)

MODEL_RESPONSES: dict[str, type[Schema]] = {"Models": ModelsSchema, "RolloutChange": RolloutChangeSchema}
MODEL_REQUESTS: dict[str, type[Schema]] = {
    "CanaryRequest": CanaryRequestSchema,
    "StableRequest": StableRequestSchema,
    "ShadowRequest": ShadowRequestSchema,
}
REFUSED = (
    "The bundle may not serve (its checksums do not match, or its held-out precision is under its precision "
    "bar), or the change does not apply to the current rollout (a canary is running, there is none to "
    "promote or roll back): error.message says which"
)
UNKNOWN = "No bundle of that version in the artifacts directory"
# method, path, summary, answers, and the rest of the operation.
Operation = tuple[str, str, str, dict[str, Any], dict[str, Any]]


def _body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": name}}}}


def _changed(description: str) -> dict[str, Any]:
    return {"200": json_answer(ref("RolloutChange"), description)}


def model_operations() -> list[Operation]:
    """Return the operations of /models, each with every status it answers."""
    return [
        (
            "get",
            "/models",
            "The model bundles on disk (metadata in brief, why one may not serve), what serves, its changes",
            {"200": json_answer(ref("Models"), "Bundles, rollout, history"), **errors(503)},
            {},
        ),
        (
            "post",
            "/models/canary",
            "Send a share of the ids (by a hash of each id) to a version, once its bundle is checked",
            {
                **_changed("The canary serves its share within effective_within_s"),
                **errors(400, 404, 409, 415, 422, 503, reasons={404: UNKNOWN, 409: REFUSED}),
            },
            _body("CanaryRequest"),
        ),
        (
            "post",
            "/models/promote",
            "Make the canary the stable version (its bundle checked again)",
            {**_changed("The canary serves every id"), **errors(409, 503, reasons={409: REFUSED})},
            {},
        ),
        (
            "post",
            "/models/rollback",
            "Drop the canary: the stable version serves every id",
            {**_changed("The stable version serves every id"), **errors(409, 503, reasons={409: REFUSED})},
            {},
        ),
        (
            "post",
            "/models/stable",
            "Serve every id with a version, once its bundle is checked (drops any canary)",
            {
                **_changed("The version serves every id"),
                **errors(400, 404, 409, 415, 422, 503, reasons={404: UNKNOWN, 409: REFUSED}),
            },
            _body("StableRequest"),
        ),
        (
            "post",
            "/models/shadow",
            "Predict every observation with a version too, once its bundle is checked; it serves none",
            {
                **_changed("Every worker predicts with it too within effective_within_s"),
                **errors(400, 404, 409, 415, 422, 503, reasons={404: UNKNOWN, 409: REFUSED}),
            },
            _body("ShadowRequest"),
        ),
        (
            "delete",
            "/models/shadow",
            "Stop the shadow predictions (those made stay, compared on /monitoring)",
            {**_changed("No shadow runs"), **errors(409, 503, reasons={409: REFUSED})},
            {},
        ),
    ]
