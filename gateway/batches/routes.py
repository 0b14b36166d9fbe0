"""The bulk API: submit a batch (JSON, NDJSON or CSV), follow its progress, download its results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from flask import Response, g, jsonify, request, stream_with_context, url_for
from sqlalchemy.engine import Connection

from core.api_keys import ADMIN, READ, SUBMIT
from core.feature_spec import FeatureSpec
from core.storage.backlog import BULK
from core.storage.batches import (
    BatchProgress,
    batch_progress,
    iter_batch_rejections,
    iter_batch_results,
    set_batch_priority,
)
from gateway.access.checks import charge_batch_items
from gateway.batches.downloads import csv_lines, in_blocks
from gateway.batches.formats import (
    CSV_TYPES,
    NDJSON_TYPES,
    count_csv,
    count_json_document,
    count_ndjson,
    iter_csv,
    iter_json_document,
    iter_ndjson,
)
from gateway.batches.intake import (
    AtomicBatchRejected,
    EmptyBatch,
    RawItem,
    TooManyItems,
    check_item_count,
    new_batch_id,
    submit_batch,
    valid_batch_id,
)
from gateway.batches.priority import BatchPriorityRequestSchema, batch_priority_request_schema
from gateway.batches.uploads import request_body_file
from gateway.bodies import read_json_body, refuse_encoded_body
from gateway.context import gateway_context
from gateway.declared_routes import ApiBlueprint
from gateway.errors import ApiError
from gateway.metrics import OBSERVATIONS_SUBMITTED
from gateway.openapi.answers import answer, errors, json_answer, ndjson, ref
from gateway.openapi.parts import ATOMIC_BATCHES, batch_uploads
from gateway.predictions.backlog_guard import refuse_if_shedding
from gateway.query_args import BatchArgs, ResultFormatArgs, batch_args, load_query, result_format_args
from gateway.responses import (
    batch_progress_schema,
    batch_receipt_schema,
    batch_result_schema,
    rejection_schema,
    rejections_schema,
)

blueprint = ApiBlueprint("batches", __name__)


def _counted_items(body: IO[bytes], spec: FeatureSpec, max_line_bytes: int) -> tuple[int, Iterator[RawItem]]:
    """Return how many items the upload holds (counted and checked first) and an iterator over them.

    spec: the feature spec of the version accepting the batch, which types CSV cells.
    max_line_bytes: the longest NDJSON or CSV line read (one item is no larger than one submission's body).
    """
    mimetype = request.mimetype
    if mimetype in NDJSON_TYPES:
        return count_ndjson(body, max_line_bytes), iter_ndjson(_rewound(body), max_line_bytes)
    if mimetype in CSV_TYPES:
        return count_csv(body, spec, max_line_bytes), iter_csv(_rewound(body), spec, max_line_bytes)
    if mimetype == "application/json":
        return count_json_document(body), iter_json_document(_rewound(body))
    raise ApiError(415, "Send the batch as application/json, application/x-ndjson or text/csv.")


def _rewound(body: IO[bytes]) -> IO[bytes]:
    body.seek(0)
    return body


@blueprint.declare(
    "POST",
    "/batches",
    scope=SUBMIT,
    summary="Submit many observations: valid items are accepted even when others are not",
    description=ATOMIC_BATCHES,
    query=BatchArgs,
    uploads=batch_uploads,
    answers={
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
)
def submit_batch_request() -> Response:
    """Accept many observations at once; valid ones are queued even when others are rejected."""
    context = gateway_context()
    settings = context.settings
    atomic: bool = load_query(batch_args)["atomic"]
    refuse_encoded_body()
    refuse_if_shedding(context.backlog_guard, BULK)
    # One version accepts the whole batch: the one its id lands on.
    batch_id = new_batch_id()
    accepting = context.rollout.accepting(batch_id)
    with request_body_file(settings.bulk_max_body_bytes) as body:
        count, items = _counted_items(body, accepting.spec, settings.max_body_bytes)
        try:
            # Known before anything is stored: the upload has arrived whole and been counted.
            check_item_count(count, settings.bulk_max_items)
            charge_batch_items(count)
            receipt = submit_batch(
                engine=context.engine,
                celery=context.celery,
                schemas=accepting.schemas,
                items=items,
                atomic=atomic,
                max_items=settings.bulk_max_items,
                chunk_size=settings.bulk_chunk_rows,
                settings=settings,
                listed=settings.bulk_rejections_listed,
                batch_id=batch_id,
                version=accepting.version,
                share_key=g.get("api_key"),
            )
        except TooManyItems as exc:
            raise ApiError(413, str(exc)) from None
        except EmptyBatch as exc:
            raise ApiError(422, str(exc), fields={"_schema": ["Send at least one item."]}) from None
        except AtomicBatchRejected as exc:
            raise ApiError(
                422,
                f"{exc.count} of the items are not valid; nothing was stored (atomic batch). "
                f"The first {len(exc.rejected)} are listed.",
                fields={"rejected": rejections_schema.dump(exc.rejected), "rejected_count": exc.count},
            ) from None
    OBSERVATIONS_SUBMITTED.labels(outcome="accepted").inc(receipt.accepted)
    OBSERVATIONS_SUBMITTED.labels(outcome="rejected").inc(receipt.rejected_count)
    response = jsonify(batch_receipt_schema.dump(receipt))
    response.status_code = 202
    response.headers["Location"] = url_for("batches.get_batch", batch_id=receipt.batch_id)
    return response


def _progress_or_404(conn: Connection, batch_id: str) -> BatchProgress:
    """Return a batch's progress; 404 for an unknown id, and unasked for one no batch could have (a NUL)."""
    progress = batch_progress(conn=conn, batch_id=batch_id) if valid_batch_id(batch_id) else None
    if progress is None:
        raise ApiError(404, f"No batch with id {batch_id!r}.")
    return progress


@blueprint.declare(
    "GET",
    "/batches/<batch_id>",
    scope=READ,
    summary="Counts by status, progress, start and end of a batch",
    answers={
        "200": json_answer(ref("BatchProgress"), "Progress; Retry-After while running", "Retry-After"),
        **errors(404, 503),
    },
)
def get_batch(batch_id: str) -> Response:
    """Return the counts by status, progress and times of a batch."""
    with gateway_context().engine.connect() as conn:
        progress = _progress_or_404(conn, batch_id)
    response = jsonify(batch_progress_schema.dump(progress))
    if not progress.done:
        response.headers["Retry-After"] = str(gateway_context().settings.poll_retry_after_s)
    return response


@blueprint.declare(
    "PUT",
    "/batches/<batch_id>/priority",
    scope=ADMIN,
    summary="Set a batch's priority on the bulk lane: its rows not yet handed to the workers go first",
    body=BatchPriorityRequestSchema,
    answers={
        "200": json_answer(ref("BatchProgress"), "The batch, with its new priority"),
        **errors(400, 404, 415, 422, 503),
    },
)
def set_priority(batch_id: str) -> Response:
    """Set the priority of a batch: the feeder hands out the slices of higher priorities first."""
    priority = batch_priority_request_schema.load(read_json_body())["priority"]
    with gateway_context().engine.begin() as conn:
        _progress_or_404(conn, batch_id)
        set_batch_priority(conn=conn, batch_id=batch_id, priority=priority)
        progress = _progress_or_404(conn, batch_id)
    return jsonify(batch_progress_schema.dump(progress))


def _result_format() -> str:
    chosen: str | None = load_query(result_format_args)["format"]
    if chosen is None:
        best = request.accept_mimetypes.best_match(
            ["application/x-ndjson", "text/csv"], default="application/x-ndjson"
        )
        chosen = "csv" if best == "text/csv" else "ndjson"
    return chosen


@blueprint.declare(
    "GET",
    "/batches/<batch_id>/results",
    scope=READ,
    summary="Every accepted item's result in submission order, streamed",
    query=ResultFormatArgs,
    answers={
        "200": answer(
            "One BatchResult per line (NDJSON), or as CSV with a header row",
            {**ndjson(ref("BatchResult")), "text/csv": {"schema": {"type": "string"}}},
        ),
        **errors(404, 422, 503, reasons={422: "The format argument is not ndjson or csv"}),
    },
)
def get_batch_results(batch_id: str) -> Response:
    """Stream every accepted item's result in submission order, as NDJSON or CSV."""
    result_format = _result_format()
    engine = gateway_context().engine
    with engine.connect() as conn:
        _progress_or_404(conn, batch_id)

    def rows() -> Iterator[dict[str, Any]]:
        with engine.connect() as conn:
            for item in iter_batch_results(conn=conn, batch_id=batch_id):
                yield batch_result_schema.dump(item)

    lines = csv_lines(rows()) if result_format == "csv" else (json.dumps(row) + "\n" for row in rows())
    content_type = "text/csv; charset=utf-8" if result_format == "csv" else "application/x-ndjson"
    return Response(stream_with_context(in_blocks(lines)), content_type=content_type)


@blueprint.declare(
    "GET",
    "/batches/<batch_id>/rejections",
    scope=READ,
    summary="Every rejected item of a batch, in submission order, streamed",
    answers={"200": answer("One Rejection per line", ndjson(ref("Rejection"))), **errors(404, 503)},
)
def get_batch_rejections(batch_id: str) -> Response:
    """Stream every rejected item of a batch, in submission order, as NDJSON."""
    engine = gateway_context().engine
    with engine.connect() as conn:
        _progress_or_404(conn, batch_id)

    def lines() -> Iterator[str]:
        with engine.connect() as conn:
            for rejection in iter_batch_rejections(conn=conn, batch_id=batch_id):
                yield json.dumps(rejection_schema.dump(rejection)) + "\n"

    return Response(stream_with_context(in_blocks(lines())), content_type="application/x-ndjson")
