"""How the bench talks to each peer: its request bodies, how its results are polled, how bulk is sent."""

from __future__ import annotations

from math import ceil
from typing import Any

import aiohttp

from bench.load import OURS, RequestShape
from bench.peers.measure import PeerEndpoint, TaskFailed
from bench.plan import Plan
from devstack.course import COURSE_OBSERVATION

CELERY_TEMPLATE = "Celery template (Flask + one task per request)"
BENTOML_SYNC = "BentoML, adaptive batching, sync endpoint"
BENTOML_TASK = "BentoML, task endpoint (submit + poll), 1 worker"
# A tutorial user with many rows to send and one task per row: many requests in flight at once.
TEMPLATE_BULK_CONCURRENCY = 64
# BentoML's batchable endpoint takes lists: bulk goes as lists of rows_per_request, two at a time as ours.
BENTOML_BULK_CONCURRENCY = 2


def _row(n: int) -> dict[str, Any]:
    return {**COURSE_OBSERVATION, "hour": n % 24}


def one_row(run: str, n: int) -> dict[str, Any]:
    """Return the n-th single observation as BentoML's batchable endpoint takes it: a list of one row."""
    return {"observations": [_row(n)]}


def rows_chunk(plan: Plan) -> RequestShape:
    """Return the shape whose n-th request carries rows n * rows_per_request onward (bulk_rows in all)."""

    def body(run: str, n: int) -> dict[str, Any]:
        first = n * plan.rows_per_request
        return {
            "observations": [
                _row(m) for m in range(first, min(first + plan.rows_per_request, plan.bulk_rows))
            ]
        }

    return RequestShape(body=body, answer_id="task_id")


def celery_template(base_url: str, plan: Plan) -> PeerEndpoint:
    """The template: POST /predict answers {"result_id"}, GET /result/<id> says whether it is ready."""

    async def poll(session: aiohttp.ClientSession, task_id: str) -> bool:
        async with session.get(f"{base_url}/result/{task_id}") as response:
            return response.status == 200 and bool((await response.json())["ready"])

    shape = RequestShape(body=OURS.body, answer_id="result_id")
    return PeerEndpoint(
        label=CELERY_TEMPLATE,
        submit_url=f"{base_url}/predict",
        shape=shape,
        poll=poll,
        bulk_shape=shape,
        bulk_rows=plan.one_by_one_bulk_rows,
        bulk_requests=plan.one_by_one_bulk_rows,
        bulk_concurrency=TEMPLATE_BULK_CONCURRENCY,
        bulk_how=f"{plan.one_by_one_bulk_rows:,} obs, one request (one task) each, "
        f"{TEMPLATE_BULK_CONCURRENCY} in flight",
    )


def bentoml_sync(base_url: str, plan: Plan) -> PeerEndpoint:
    """BentoML's batchable endpoint: the answer holds the predictions."""
    return PeerEndpoint(
        label=BENTOML_SYNC,
        submit_url=f"{base_url}/predict",
        shape=RequestShape(body=one_row),
        poll=None,
        bulk_shape=RequestShape(body=rows_chunk(plan).body),
        bulk_rows=plan.bulk_rows,
        bulk_requests=ceil(plan.bulk_rows / plan.rows_per_request),
        bulk_concurrency=BENTOML_BULK_CONCURRENCY,
        bulk_how=f"lists of {plan.rows_per_request:,} rows, {BENTOML_BULK_CONCURRENCY} in flight",
    )


def bentoml_task(base_url: str, plan: Plan) -> PeerEndpoint:
    """BentoML's task endpoint: POST /submit, GET /status until completed, then GET /get for the result."""
    route = f"{base_url}/predict_task"

    async def poll(session: aiohttp.ClientSession, task_id: str) -> bool:
        async with session.get(f"{route}/status", params={"task_id": task_id}) as response:
            status = (await response.json())["status"] if response.status == 200 else ""
        if status == "failed":
            raise TaskFailed(f"BentoML task {task_id} failed")
        if status != "completed":
            return False
        async with session.get(f"{route}/get", params={"task_id": task_id}) as response:
            await response.read()
            return response.status == 200

    return PeerEndpoint(
        label=BENTOML_TASK,
        submit_url=f"{route}/submit",
        shape=RequestShape(body=one_row, answer_id="task_id"),
        poll=poll,
        bulk_shape=rows_chunk(plan),
        bulk_rows=plan.bulk_rows,
        bulk_requests=ceil(plan.bulk_rows / plan.rows_per_request),
        bulk_concurrency=BENTOML_BULK_CONCURRENCY,
        bulk_how=f"tasks of {plan.rows_per_request:,} rows, {BENTOML_BULK_CONCURRENCY} submitted at a time",
    )
