"""The admin API's model rollout bodies: what /models answers, and what its POSTs take."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, pre_dump, validate

from core.feature_spec import VERSION_RULE
from core.rollout.admin import ModelCatalog
from core.rollout.state import ROLLOUT_ACTIONS, Rollout
from worker.schemas import StrictSchema

VERSION_MAX_LENGTH = 64


def _version_field(**kwargs: Any) -> fields.String:
    # Any name is well-formed here: one that names no bundle on disk is a 404, as an unknown id is.
    return fields.String(
        validate=validate.Length(min=1, max=VERSION_MAX_LENGTH),
        metadata={"description": f"A bundle folder's name: {VERSION_RULE}"},
        **kwargs,
    )


class CanaryRequestSchema(StrictSchema):
    """Start a canary, or change the running canary's share of the ids."""

    version = _version_field(required=True)
    percent = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))


class StableRequestSchema(StrictSchema):
    """Serve every id with this version (any canary is dropped)."""

    version = _version_field(required=True)


class ShadowRequestSchema(StrictSchema):
    """Predict every observation with this version too, beside the one that serves it; serve none of it."""

    version = _version_field(required=True)


class RolloutSchema(Schema):
    """What serves: the stable version, the canary and its share of the ids; the shadow serves none."""

    stable_version = fields.String(required=True)
    canary_version = fields.String(allow_none=True, required=True)
    canary_percent = fields.Integer(required=True)
    shadow_version = fields.String(allow_none=True, required=True)


class RolloutEventSchema(Schema):
    """One change of the rollout: when, what, by which API key, and what served after it."""

    at = fields.DateTime(required=True)
    action = fields.String(required=True, metadata={"enum": list(ROLLOUT_ACTIONS)})
    by = fields.String(allow_none=True, required=True)
    rollout = fields.Nested(RolloutSchema, required=True)


class BundleSummarySchema(Schema):
    """A bundle on disk: its metadata in brief, and why it may not serve (problem null: it may)."""

    version = fields.String(required=True)
    role = fields.String(
        allow_none=True, required=True, metadata={"enum": ["stable", "canary", "shadow", None]}
    )
    created_at = fields.String(allow_none=True, required=True)
    classifier = fields.String(allow_none=True, required=True)
    threshold = fields.Float(allow_none=True, required=True)
    precision_bar = fields.Float(allow_none=True, required=True)
    held_out_precision = fields.Float(allow_none=True, required=True)
    held_out_recall = fields.Float(allow_none=True, required=True)
    held_out_roc_auc = fields.Float(allow_none=True, required=True)
    problem = fields.String(allow_none=True, required=True)


class ModelsSchema(Schema):
    """GET /models: bundles on disk, what serves (stored: false while the settings' version does), history."""

    versions = fields.List(fields.Nested(BundleSummarySchema), required=True)
    rollout = fields.Nested(RolloutSchema, required=True)
    stored = fields.Boolean(required=True)
    history = fields.List(fields.Nested(RolloutEventSchema), required=True)

    @pre_dump
    def _roles(self, catalog: ModelCatalog, **_: Any) -> dict[str, Any]:
        rollout = catalog.rollout
        roles = {
            rollout.stable_version: "stable",
            rollout.canary_version: "canary",
            rollout.shadow_version: "shadow",
        }
        return {
            "versions": [{**vars(b), "role": roles.get(b.version)} for b in catalog.bundles],
            "rollout": catalog.rollout,
            "stored": catalog.stored,
            "history": catalog.history,
        }


class RolloutChangeSchema(Schema):
    """The answer to a rollout change: what serves now, and within how long every gateway follows it."""

    action = fields.String(required=True, metadata={"enum": list(ROLLOUT_ACTIONS)})
    by = fields.String(allow_none=True, required=True)
    rollout = fields.Nested(RolloutSchema, required=True)
    effective_within_s = fields.Float(required=True)


def rollout_change(action: str, by: str | None, rollout: Rollout, within_s: float) -> dict[str, Any]:
    """Return the input of RolloutChangeSchema."""
    return {"action": action, "by": by, "rollout": rollout, "effective_within_s": within_s}


canary_request_schema = CanaryRequestSchema()
stable_request_schema = StableRequestSchema()
shadow_request_schema = ShadowRequestSchema()
models_schema = ModelsSchema()
rollout_change_schema = RolloutChangeSchema()
