"""Operators' view: /metrics carries the backlog the alerts watch, and every metric an alert names exists."""

from __future__ import annotations

import re
import time

import requests

from core.settings import PROJECT_ROOT
from devstack.stack import ServiceStack, wait_until
from tests.factories import prediction_request
from tests.service_steps import scrape


def test_backlog_grows_and_ages_while_the_workers_are_stopped(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    before = scrape(stack)
    with requests.Session() as session:
        for _ in range(3):
            response = session.post(stack.url("/predict"), json=prediction_request(), timeout=5)
            assert response.status_code == 202
    waiting = 'broker_waiting_messages{lane="interactive"}'
    wait_until(lambda: scrape(stack)[waiting] >= 1, timeout=10, interval=0.1)
    time.sleep(1.1)
    after = scrape(stack)
    queued = 'predictions_queued_observations{lane="interactive"}'
    oldest = 'predictions_oldest_queued_age_seconds{lane="interactive"}'
    assert after[queued] == before[queued] + 3
    assert after[oldest] >= 1
    assert after["predictions_failed_observations"] == before["predictions_failed_observations"]
    assert after['service_dependency_up{name="database"}'] == 1
    assert after['service_dependency_up{name="broker"}'] == 1
    assert after['broker_waiting_messages{lane="bulk"}'] == 0


def test_every_metric_an_alert_names_is_exposed(stack: ServiceStack) -> None:
    requests.post(stack.url("/predict"), json=prediction_request(), timeout=5)  # requests counted
    rules = (PROJECT_ROOT / "deploy" / "monitoring" / "alerts.yml").read_text()
    named = set(re.findall(r"\b((?:gateway|predictions|broker|service)_[a-z_]+)\b", rules))
    exposed = {re.sub(r"\{.*", "", sample) for sample in scrape(stack)}
    assert named, "no metric found in the rules"
    assert named - exposed == set()
