"""Pooled Postgres connections: one that died while idle is replaced unseen; one in use is not pinged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.storage.engine import PING_AFTER_IDLE_S, make_engine
from devstack.backends import POSTGRES_ADMIN, postgres_backend


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
