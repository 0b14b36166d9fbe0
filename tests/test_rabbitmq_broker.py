"""On RabbitMQ: work waits in quorum queues, which a broker restart does not empty, and the redrive counts
held messages through the management API, or waits for its cap without it."""

from __future__ import annotations

import pytest
import requests

from core.celery_app import create_celery_app
from core.publishing import held_messages
from core.storage.observations import insert_queued
from core.storage.records import QueuedObservation, utc_now
from devstack.stack import ServiceStack, wait_until
from tests.database import backdate_publish_times
from tests.factories import new_id, observation, prediction_request
from tests.service_steps import poll_until_finished
from worker.redrive import republish_stale


@pytest.mark.parametrize("stack", ["rabbitmq"], indirect=True)
def test_messages_waiting_in_rabbitmq_survive_its_restart_without_the_redrive(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker  # worker and redrive stopped: only the queue can bring these rows back
    bodies = [prediction_request() for _ in range(5)]
    for body in bodies:
        assert requests.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    # What the stopped worker had prefetched went back to the queue too.
    wait_until(lambda: {b["id"] for b in bodies} <= set(stack.queued_ids()), timeout=30, interval=0.5)
    waiting = sorted(stack.queued_ids())
    assert stack.backend.stop_broker is not None and stack.backend.start_broker is not None

    stack.backend.stop_broker()
    stack.backend.start_broker()

    wait_until(lambda: sorted(stack.queued_ids()) == waiting, timeout=30, interval=0.5)
    stack.start("worker")
    for body in bodies:
        assert poll_until_finished(stack, body["id"], timeout=60)["status"] == "done"
    wait_until(stack.ready, timeout=30, interval=0.5)  # the gateway's publisher reconnected
    after = prediction_request()
    assert requests.post(stack.url("/predict"), json=after, timeout=5).status_code == 202
    assert poll_until_finished(stack, after["id"], timeout=30)["status"] == "done"


@pytest.mark.parametrize("stack", ["rabbitmq"], indirect=True)
def test_the_service_declares_quorum_queues(stack: ServiceStack) -> None:
    queues = requests.get(f"{stack.backend.management_url}/api/queues/%2F", timeout=10).json()
    types = {q["name"]: q.get("type") for q in queues}
    assert types[stack.backend.queue_name] == "quorum"
    assert types[f"{stack.backend.queue_name}.redrive"] == "quorum"


@pytest.mark.parametrize("stack", ["rabbitmq"], indirect=True)
def test_without_the_management_api_the_redrive_republishes_only_past_its_cap(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker
    blind = stack.settings().model_copy(update={"broker_management_url": "", "redrive_backlog_cap_s": 60})
    lost = QueuedObservation(id=new_id("lost"), observation=observation())
    with stack.engine.begin() as conn:  # nothing waits for it and no message of it exists: it is lost
        insert_queued(conn=conn, observation_id=lost.id, observation=lost.observation, now=utc_now())
        backdate_publish_times(conn=conn, seconds=10, observation_ids=[lost.id])
    celery = create_celery_app(blind)
    try:
        assert stack.queue_length() == 0
        assert held_messages(celery, [stack.backend.queue_name], "") is None  # AMQP does not say
        # Unknown is taken as "workers may hold it": older than REDRIVE_AFTER_S (3 s), younger than the cap.
        assert republish_stale(engine=stack.engine, celery=celery, settings=blind) == 0
        with stack.engine.begin() as conn:
            backdate_publish_times(conn=conn, seconds=60, observation_ids=[lost.id])
        assert republish_stale(engine=stack.engine, celery=celery, settings=blind) == 1
    finally:
        celery.close()
    assert lost.id in stack.queued_ids()
