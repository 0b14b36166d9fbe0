"""The client API: submit an observation, poll its result, send back the true outcome."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from marshmallow import ValidationError

from core.api_keys import LABEL, READ, SUBMIT
from core.storage.backlog import INTERACTIVE
from core.storage.observations import find_prediction, save_true_class
from core.storage.records import PredictionRecord, utc_now
from core.storage.tables import QUEUED
from gateway.bodies import read_json_body
from gateway.context import gateway_context
from gateway.declared_routes import ApiBlueprint
from gateway.errors import ApiError
from gateway.metrics import OBSERVATIONS_SUBMITTED
from gateway.openapi.answers import errors, json_answer, ref
from gateway.predictions.backlog_guard import refuse_if_shedding
from gateway.predictions.submissions import Outcome, Submission, stored_replay, submit_observation
from gateway.query_args import WaitArgs, load_query, wait_args
from gateway.responses import (
    accepted_schema,
    prediction_schema,
    result_url,
)
from gateway.server.long_polls import HOLD_BATCH_HEADER, HOLD_HEADER, THROUGH_FRONT, scope_of
from worker.schemas import valid_observation_id

blueprint = ApiBlueprint("predictions", __name__)
PREDICTION = ref("Prediction")


def _with_polling_headers(response: Response, record: PredictionRecord) -> Response:
    response.headers["Location"] = result_url(record.id)
    if record.status == QUEUED:
        response.headers["Retry-After"] = str(gateway_context().settings.poll_retry_after_s)
    return response


@blueprint.declare(
    "POST",
    "/predict",
    scope=SUBMIT,
    summary="Submit one observation; poll the result URL",
    body="PredictionRequest",
    answers={
        "202": json_answer(
            {"oneOf": [ref("Accepted"), PREDICTION]},
            "Accepted; a queued one resent gets its Prediction",
            "Location",
            "Retry-After",
        ),
        "200": json_answer(PREDICTION, "Resent after its prediction finished: the result", "Location"),
        **errors(400, 409, 415, 422, 503),
    },
)
def submit_prediction() -> Response:
    """Validate and store one observation, queue it, answer 202 with the URL to poll."""
    context = gateway_context()
    # From here to its commit, the publisher may hold a message a moment for this observation.
    with context.publisher.expecting() as expected:
        body = read_json_body()
        # The version the id lands on decides which schema accepts it; the same id always lands there
        # while the rollout stays as it is.
        accepting = context.rollout.accepting(_claimed_id(body))
        try:
            request_body = accepting.schemas.load_prediction(body)
        except ValidationError:
            replayed = stored_replay(engine=context.engine, body=body)
            if replayed is None:
                raise
            submission = Submission(outcome=Outcome.REPLAYED, record=replayed)
        else:
            refuse_if_shedding(context.backlog_guard, INTERACTIVE)
            submission = submit_observation(
                engine=context.engine,
                publish=expected.deliver,
                observation_id=request_body["id"],
                observation=request_body["observation"],
                version=accepting.version,
            )
    record = submission.record
    OBSERVATIONS_SUBMITTED.labels(outcome=submission.outcome.value).inc()
    if submission.outcome is Outcome.CONFLICT:
        raise ApiError(
            409,
            f"Observation id {record.id!r} was already submitted with a different observation.",
            links={"existing": result_url(record.id)},
        )
    if submission.outcome is Outcome.ACCEPTED:
        response = jsonify(accepted_schema.dump(record.id))
        response.status_code = 202
    else:
        response = jsonify(prediction_schema.dump(record))
        response.status_code = 202 if record.status == QUEUED else 200
    return _with_polling_headers(response, record)


def _claimed_id(body: Any) -> str:
    """Return the id a body claims, or "" (its validation fails whichever version checks it)."""
    claimed = body.get("id") if isinstance(body, dict) else None
    return claimed if isinstance(claimed, str) else ""


def _wait_seconds() -> float:
    wait: float = load_query(wait_args)["wait"]
    return min(wait, gateway_context().settings.max_wait_s)


@blueprint.declare(
    "GET",
    "/predictions/<observation_id:observation_id>",
    scope=READ,
    summary="Status and result of one observation; Retry-After while it is queued",
    query=WaitArgs,
    answers={
        "200": json_answer(PREDICTION, "Queued, done or failed", "Location", "Retry-After"),
        **errors(404, 422, 503, reasons={422: "The wait argument is not a number, 0 or more"}),
    },
)
def get_prediction(observation_id: str) -> Response:
    """Return the status and, once done, the prediction; with ?wait=N, hold up to N s for the result."""
    wait = _wait_seconds()
    if not valid_observation_id(observation_id):
        raise ApiError(404, "No observation with that id.")
    with gateway_context().engine.connect() as conn:
        record = find_prediction(conn=conn, observation_id=observation_id)
    if record is None:
        raise ApiError(404, f"No observation with id {observation_id!r}.")
    response = _with_polling_headers(jsonify(prediction_schema.dump(record)), record)
    if record.status == QUEUED and wait > 0 and scope_of(request.environ).get(THROUGH_FRONT):
        response.headers[HOLD_HEADER] = f"{wait:.3f}"  # the front holds the connection, not this thread
        if record.batch_id is not None:
            response.headers[HOLD_BATCH_HEADER] = record.batch_id
    return response


@blueprint.declare(
    "POST",
    "/update",
    scope=LABEL,
    summary="Send the true outcome of an observation (before or after its prediction)",
    body="FeedbackRequest",
    answers={"200": json_answer(PREDICTION, "Stored"), **errors(400, 404, 415, 422, 503)},
)
def update_true_class() -> Response:
    """Store the true outcome of an observation (it may arrive before the prediction)."""
    context = gateway_context()
    feedback = context.schemas.feedback.load(read_json_body())
    with context.engine.begin() as conn:
        record = save_true_class(
            conn=conn, observation_id=feedback["id"], true_class=feedback["true_class"], now=utc_now()
        )
    if record is None:
        raise ApiError(404, f"No observation with id {feedback['id']!r}.")
    return jsonify(prediction_schema.dump(record))
