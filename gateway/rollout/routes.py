"""The admin API of model rollout: the bundles on disk, canary, promote, rollback, stable version, shadow."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from core.rollout.admin import RolloutPlace, UnknownBundle, change_rollout, model_catalog
from core.rollout.catalog import BundleRefused
from core.rollout.state import CANARY, PROMOTE, ROLLBACK, SET, SHADOW, SHADOW_OFF, RolloutError
from gateway.bodies import read_json_body
from gateway.context import gateway_context
from gateway.errors import ApiError
from gateway.rollout.schemas import (
    canary_request_schema,
    models_schema,
    rollout_change,
    rollout_change_schema,
    shadow_request_schema,
    stable_request_schema,
)

blueprint = Blueprint("models", __name__)


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


@blueprint.get("/models")
def list_models() -> Response:
    """Return the bundles on disk with their metadata in brief, what serves, and the last changes."""
    catalog = model_catalog(engine=gateway_context().engine, place=_place())
    return jsonify(models_schema.dump(catalog))


@blueprint.post("/models/canary")
def start_canary() -> Response:
    """Send percent of the ids to a version whose bundle verifies and meets its precision bar."""
    body = canary_request_schema.load(read_json_body())
    return _changed(CANARY, body["version"], body["percent"])


@blueprint.post("/models/promote")
def promote_canary() -> Response:
    """Make the canary the stable version (its bundle checked again), serving every id."""
    return _changed(PROMOTE)


@blueprint.post("/models/rollback")
def roll_back_canary() -> Response:
    """Drop the canary: the stable version serves every id again."""
    return _changed(ROLLBACK)


@blueprint.post("/models/stable")
def set_stable_version() -> Response:
    """Serve every id with a version whose bundle verifies and meets its precision bar (drops any canary)."""
    body = stable_request_schema.load(read_json_body())
    return _changed(SET, body["version"])


@blueprint.post("/models/shadow")
def start_shadow() -> Response:
    """Predict every observation with a checked version too, stored beside the served one; serve none."""
    body = shadow_request_schema.load(read_json_body())
    return _changed(SHADOW, body["version"])


@blueprint.delete("/models/shadow")
def stop_shadow() -> Response:
    """Stop the shadow predictions (those made are kept, for /monitoring)."""
    return _changed(SHADOW_OFF)
