"""The admin API of model rollout: the bundles on disk, canary, promote, rollback, stable version, shadow."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from core.api_keys import ADMIN
from core.rollout.admin import RolloutPlace, UnknownBundle, change_rollout, model_catalog
from core.rollout.catalog import BundleRefused
from core.rollout.state import CANARY, PROMOTE, ROLLBACK, SET, SHADOW, SHADOW_OFF, RolloutError
from gateway.bodies import read_json_body
from gateway.context import gateway_context
from gateway.declared_routes import ApiBlueprint
from gateway.errors import ApiError
from gateway.openapi.answers import errors, json_answer, ref
from gateway.rollout.schemas import (
    CanaryRequestSchema,
    ShadowRequestSchema,
    StableRequestSchema,
    canary_request_schema,
    models_schema,
    rollout_change,
    rollout_change_schema,
    shadow_request_schema,
    stable_request_schema,
)

blueprint = ApiBlueprint("models", __name__)
REFUSED = (
    "The bundle may not serve (its checksums do not match, or its held-out precision is under its precision "
    "bar), or the change does not apply to the current rollout (a canary is running, there is none to "
    "promote or roll back): error.message says which"
)
UNKNOWN = "No bundle of that version in the artifacts directory"


def _changed_answers(description: str, *statuses: int) -> dict[str, Any]:
    """Return the answers of a rollout change: the change, 409 when refused, 404 for an unknown version."""
    reasons = {404: UNKNOWN, 409: REFUSED}
    return {
        "200": json_answer(ref("RolloutChange"), description),
        **errors(*statuses, 409, 503, reasons=reasons),
    }


def _place() -> RolloutPlace:
    context = gateway_context()
    return RolloutPlace(
        artifacts_dir=context.settings.artifacts_dir,
        default_version=context.rollout.default_version,
        pinned=context.rollout.pinned,
    )


def _changed(action: str, version: str | None = None, percent: int = 0) -> Response:
    """Apply a rollout change for the calling API key; 404 unknown version, 409 refused bundle or change."""
    context = gateway_context()
    by = g.get("api_key")
    try:
        rollout = change_rollout(
            engine=context.engine, place=_place(), action=action, version=version, percent=percent, by=by
        )
    except UnknownBundle as exc:
        raise ApiError(404, f"No model bundle {exc.version!r} in the artifacts directory.") from None
    except BundleRefused as exc:
        raise ApiError(409, f"Model bundle {exc.version!r} refused: {exc.reason}.") from None
    except RolloutError as exc:
        raise ApiError(409, f"Rollout change refused: {exc}.") from None
    answer = rollout_change(action, by, rollout, context.settings.rollout_check_s)
    return jsonify(rollout_change_schema.dump(answer))


@blueprint.declare(
    "GET",
    "/models",
    scope=ADMIN,
    summary="The model bundles on disk (metadata in brief, why one may not serve), what serves, its changes",
    answers={"200": json_answer(ref("Models"), "Bundles, rollout, history"), **errors(503)},
)
def list_models() -> Response:
    """Return the bundles on disk with their metadata in brief, what serves, and the last changes."""
    catalog = model_catalog(engine=gateway_context().engine, place=_place())
    return jsonify(models_schema.dump(catalog))


@blueprint.declare(
    "POST",
    "/models/canary",
    scope=ADMIN,
    summary="Send a share of the ids (by a hash of each id) to a version, once its bundle is checked",
    body=CanaryRequestSchema,
    answers=_changed_answers("The canary serves its share within effective_within_s", 400, 404, 415, 422),
)
def start_canary() -> Response:
    """Send percent of the ids to a version whose bundle verifies and meets its precision bar."""
    body = canary_request_schema.load(read_json_body())
    return _changed(CANARY, body["version"], body["percent"])


@blueprint.declare(
    "POST",
    "/models/promote",
    scope=ADMIN,
    summary="Make the canary the stable version (its bundle checked again)",
    answers=_changed_answers("The canary serves every id"),
)
def promote_canary() -> Response:
    """Make the canary the stable version (its bundle checked again), serving every id."""
    return _changed(PROMOTE)


@blueprint.declare(
    "POST",
    "/models/rollback",
    scope=ADMIN,
    summary="Drop the canary: the stable version serves every id",
    answers=_changed_answers("The stable version serves every id"),
)
def roll_back_canary() -> Response:
    """Drop the canary: the stable version serves every id again."""
    return _changed(ROLLBACK)


@blueprint.declare(
    "POST",
    "/models/stable",
    scope=ADMIN,
    summary="Serve every id with a version, once its bundle is checked (drops any canary)",
    body=StableRequestSchema,
    answers=_changed_answers("The version serves every id", 400, 404, 415, 422),
)
def set_stable_version() -> Response:
    """Serve every id with a version whose bundle verifies and meets its precision bar (drops any canary)."""
    body = stable_request_schema.load(read_json_body())
    return _changed(SET, body["version"])


@blueprint.declare(
    "POST",
    "/models/shadow",
    scope=ADMIN,
    summary="Predict every observation with a version too, once its bundle is checked; it serves none",
    body=ShadowRequestSchema,
    answers=_changed_answers(
        "Every worker predicts with it too within effective_within_s", 400, 404, 415, 422
    ),
)
def start_shadow() -> Response:
    """Predict every observation with a checked version too, stored beside the served one; serve none."""
    body = shadow_request_schema.load(read_json_body())
    return _changed(SHADOW, body["version"])


@blueprint.declare(
    "DELETE",
    "/models/shadow",
    scope=ADMIN,
    summary="Stop the shadow predictions (those made stay, compared on /monitoring)",
    answers=_changed_answers("No shadow runs"),
)
def stop_shadow() -> Response:
    """Stop the shadow predictions (those made are kept, for /monitoring)."""
    return _changed(SHADOW_OFF)
