"""Response schemas: every answer the gateway sends is dumped through one of these, and OpenAPI reads them."""

from __future__ import annotations

from typing import Any

from flask import url_for
from marshmallow import Schema, fields, post_dump, pre_dump

from core.storage.batches import BatchProgress
from core.storage.records import PredictionRecord
from core.storage.tables import STATUSES


class EndpointUrl(fields.String):
    """An id, dumped as the URL of one of the gateway's endpoints."""

    def __init__(self, endpoint: str, argument: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.argument = argument

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str:
        return url_for(self.endpoint, **{self.argument: value})


def result_url(observation_id: str) -> str:
    """Return the URL a client polls for one observation's result."""
    return url_for("predictions.get_prediction", observation_id=observation_id)


class ResultLinksSchema(Schema):
    """Where to poll an observation's result."""

    result = EndpointUrl("predictions.get_prediction", "observation_id", required=True)


class BatchLinksSchema(Schema):
    """Where to follow a batch and download its results."""

    self_ = EndpointUrl("batches.get_batch", "batch_id", data_key="self", required=True)
    results = EndpointUrl("batches.get_batch_results", "batch_id", required=True)
    rejections = EndpointUrl("batches.get_batch_rejections", "batch_id", required=True)


def batch_links(batch_id: str) -> dict[str, str]:
    """Return the input of BatchLinksSchema for one batch."""
    return {"self_": batch_id, "results": batch_id, "rejections": batch_id}


def _without_none(data: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        if data.get(name) is None:
            data.pop(name, None)
    return data


class AcceptedSchema(Schema):
    """202 to a new observation: its id, queued, and where to poll."""

    id = fields.String(required=True)
    status = fields.Constant("queued", metadata={"type": "string", "enum": ["queued"]}, required=True)
    links = fields.Nested(ResultLinksSchema, required=True)

    @pre_dump
    def _links(self, observation_id: str, **_: Any) -> dict[str, Any]:
        return {"id": observation_id, "links": {"result": observation_id}}


class PredictionSchema(Schema):
    """The public view of a stored observation; failure_reason only when it failed."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    prediction = fields.Boolean(allow_none=True, required=True)
    proba = fields.Float(allow_none=True, required=True)
    model_version = fields.String(allow_none=True, required=True)
    accepted_version = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The model version whose input schema accepted it, which predicts it"},
    )
    received_at = fields.DateTime(required=True)
    predicted_at = fields.DateTime(allow_none=True, required=True)
    true_class = fields.Boolean(allow_none=True, required=True)
    failure_reason = fields.String()
    links = fields.Nested(ResultLinksSchema, required=True)

    @pre_dump
    def _links(self, record: PredictionRecord, **_: Any) -> dict[str, Any]:
        return {**vars(record), "links": {"result": record.id}}

    @post_dump
    def _failure_only_when_failed(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_none(data, "failure_reason")


class RejectionSchema(Schema):
    """One item of a batch that was not accepted, with every error keyed by field."""

    index = fields.Integer(required=True)
    id = fields.String(allow_none=True, required=True)
    errors = fields.Dict(required=True)


class BatchReceiptSchema(Schema):
    """202 to a batch: how many items, accepted and rejected, the first rejected items, where to follow it."""

    batch_id = fields.String(required=True)
    items = fields.Integer(required=True)
    accepted = fields.Integer(required=True)
    rejected_count = fields.Integer(required=True)
    rejected = fields.List(
        fields.Nested(RejectionSchema),
        required=True,
        metadata={"description": "The first BULK_REJECTIONS_LISTED rejected items; all at links.rejections"},
    )
    links = fields.Nested(BatchLinksSchema, required=True)

    @pre_dump
    def _links(self, receipt: Any, **_: Any) -> dict[str, Any]:
        return {**vars(receipt), "links": batch_links(receipt.batch_id)}


class StatusCountsSchema(Schema):
    """Accepted items of a batch by status."""

    queued = fields.Integer(required=True)
    done = fields.Integer(required=True)
    failed = fields.Integer(required=True)


class BatchProgressSchema(Schema):
    """A batch's counts by status, progress and times."""

    batch_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["running", "done"]})
    items = fields.Integer(required=True)
    accepted = fields.Integer(required=True)
    rejected = fields.Integer(required=True, metadata={"description": "How many items were rejected"})
    counts = fields.Nested(StatusCountsSchema, required=True)
    progress = fields.Float(required=True)
    started_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(allow_none=True, required=True)
    priority = fields.Integer(
        required=True,
        metadata={"description": "Its turn on the bulk lane: rows of a higher one go to the workers first"},
    )
    links = fields.Nested(BatchLinksSchema, required=True)

    @pre_dump
    def _derived(self, progress: BatchProgress, **_: Any) -> dict[str, Any]:
        finished = progress.counts["done"] + progress.counts["failed"]
        return {
            "batch_id": progress.id,
            "status": "done" if progress.done else "running",
            "items": progress.items,
            "accepted": progress.accepted,
            "rejected": progress.rejected,
            "counts": progress.counts,
            "progress": round(finished / progress.accepted, 4) if progress.accepted else 1.0,
            "started_at": progress.created_at,
            "finished_at": progress.finished_at,
            "priority": progress.priority,
            "links": batch_links(progress.id),
        }


class BatchResultSchema(Schema):
    """One line of a batch's results: the item's position in the submission and its outcome."""

    index = fields.Integer(required=True)
    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    prediction = fields.Boolean(allow_none=True, required=True)
    proba = fields.Float(allow_none=True, required=True)
    model_version = fields.String(allow_none=True, required=True)
    accepted_version = fields.String(allow_none=True, required=True)
    predicted_at = fields.DateTime(allow_none=True, required=True)
    failure_reason = fields.String(allow_none=True, required=True)

    @pre_dump
    def _position(self, item: tuple[int, PredictionRecord], **_: Any) -> dict[str, Any]:
        position, record = item
        return {**vars(record), "index": position}


class ErrorBodySchema(Schema):
    """What went wrong: a code, a message, and the details that apply."""

    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(
        data_key="fields", attribute="fields", metadata={"description": "Every field error, keyed by field"}
    )
    links = fields.Dict(keys=fields.String(), values=fields.String())
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "/ready: each check, ok or down"},
    )
    request_id = fields.String()

    @post_dump
    def _only_what_applies(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _without_none(data, "fields", "links", "checks", "request_id")


class ErrorSchema(Schema):
    """The one error envelope: {"error": {...}}."""

    error = fields.Nested(ErrorBodySchema, required=True)


class HealthSchema(Schema):
    """The process is alive."""

    status = fields.Constant("ok", metadata={"type": "string", "enum": ["ok"]}, required=True)


class ReadySchema(Schema):
    """Every dependency answered."""

    status = fields.Constant("ready", metadata={"type": "string", "enum": ["ready"]}, required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class VersionPerformanceSchema(Schema):
    """Live precision and recall of one model version, with the confusion counts they rest on."""

    labelled = fields.Integer(required=True)
    true_positive = fields.Integer(required=True)
    false_positive = fields.Integer(required=True)
    false_negative = fields.Integer(required=True)
    true_negative = fields.Integer(required=True)
    precision = fields.Float(allow_none=True, required=True)
    recall = fields.Float(allow_none=True, required=True)


class PerformanceSchema(Schema):
    """Live performance per model version."""

    model_versions = fields.Dict(
        keys=fields.String(), values=fields.Nested(VersionPerformanceSchema), required=True
    )


accepted_schema = AcceptedSchema()
prediction_schema = PredictionSchema()
batch_receipt_schema = BatchReceiptSchema()
rejection_schema = RejectionSchema()
rejections_schema = RejectionSchema(many=True)
batch_progress_schema = BatchProgressSchema()
batch_result_schema = BatchResultSchema()
error_schema = ErrorSchema()
health_schema = HealthSchema()
ready_schema = ReadySchema()
performance_schema = PerformanceSchema()
