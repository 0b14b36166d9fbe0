"""On RabbitMQ, waiting work lives in quorum queues, which a broker restart does not empty."""

from __future__ import annotations

import pytest
import requests

from devstack.stack import ServiceStack, wait_until
from tests.factories import prediction_request
from tests.service_steps import poll_until_finished


@pytest.mark.parametrize("stack", ["rabbitmq"], indirect=True)
def test_messages_waiting_in_rabbitmq_survive_its_restart_without_the_redrive(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker  # worker and redrive stopped: only the queue can bring these rows back
    bodies = [prediction_request() for _ in range(5)]
    for body in bodies:
        assert requests.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    wait_until(lambda: stack.queue_length() == len(bodies), timeout=10)
    assert stack.backend.stop_broker is not None and stack.backend.start_broker is not None

    stack.backend.stop_broker()
    stack.backend.start_broker()

    wait_until(lambda: stack.queue_length() == len(bodies), timeout=30, interval=0.5)
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
