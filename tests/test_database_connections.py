"""Pooled Postgres connections: one that died while idle is replaced unseen; one in use is not pinged."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.settings import Settings
from core.storage.engine import PING_AFTER_IDLE_S, make_engine
from devstack.backends import POSTGRES_ADMIN, postgres_backend
from gateway.app import create_app
from gateway.context import EXTENSION


@pytest.fixture
def engine() -> Iterator[Engine]:
    backend = postgres_backend()
    engine = make_engine(backend.database_url)
    try:
        yield engine
    finally:
        engine.dispose()
        backend.close()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        yield connection


def kill_backend(admin: psycopg.Connection[Any], pid: int) -> None:
    """End a server process as a database restart would."""
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_connection_killed_while_idle_is_replaced_before_use(
    engine: Engine, admin: psycopg.Connection[Any]
) -> None:
    dead = backend_pid(engine)
    kill_backend(admin, dead)
    time.sleep(PING_AFTER_IDLE_S + 0.2)
    assert backend_pid(engine) != dead  # no error: the checkout ping found it dead


def test_connection_reused_at_once_is_not_pinged(engine: Engine, admin: psycopg.Connection[Any]) -> None:
    dead = backend_pid(engine)
    returned = time.monotonic()
    kill_backend(admin, dead)
    if time.monotonic() - returned > PING_AFTER_IDLE_S / 2:
        pytest.skip("the kill took too long to reuse the connection within the threshold")
    # Reused within the idle threshold: no ping, so the loss surfaces once, and the pool recovers.
    with pytest.raises(sa.exc.OperationalError) as lost:
        backend_pid(engine)
    assert lost.value.connection_invalidated
    assert backend_pid(engine) != dead


def sessions_opened(admin: psycopg.Connection[Any], database: str) -> int:
    row = admin.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
    assert row is not None
    return int(row[0])


def test_gateway_threads_keep_their_connections_instead_of_opening_new_ones(
    admin: psycopg.Connection[Any],
) -> None:
    backend = postgres_backend()
    settings = Settings(database_url=backend.database_url, broker_url=backend.broker_url, gateway_threads=8)
    engine = create_app({"SETTINGS": settings}).extensions[EXTENSION].engine
    database = engine.url.database
    assert database is not None
    start = threading.Barrier(settings.gateway_threads)

    def busy_thread() -> None:
        start.wait()
        for n in range(100):
            with engine.connect() as conn:  # held while the database works, as a request holds it
                conn.execute(sa.text("SELECT pg_sleep(0.002)"))
            time.sleep(0.001 * (n % 5))  # then not, as between requests: how many hold one varies

    try:
        before = sessions_opened(admin, database)
        threads = [threading.Thread(target=busy_thread) for _ in range(settings.gateway_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        opened = sessions_opened(admin, database) - before
        # At most one per thread; with fewer pooled than threads, hundreds were opened and closed.
        assert opened <= settings.gateway_threads, f"{opened} connections opened for 800 uses by 8 threads"
    finally:
        engine.dispose()
        backend.close()
