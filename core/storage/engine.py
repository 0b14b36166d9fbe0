"""Database engines for Postgres and SQLite that survive server restarts and concurrent writers."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Return an engine for Postgres or SQLite that survives server restarts and concurrent writers.

    On Postgres, pool_size connections stay open once used, and up to 5 more are opened when more threads
    ask at once and closed when given back: a process with more threads than pool_size that all use the
    database opens and closes connections under load (a new Postgres backend process each time).
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=5,
        connect_args={"connect_timeout": 5},
        # JSON columns read with orjson: a worker reads thousands of observations a batch, at about a fifth of
        # the json module's cost. What they hold is validated: no integer beyond 64 bits (read as a float).
        json_deserializer=orjson.loads,
    )
    _ping_connections_back_from_idle(engine)
    return engine


# A connection reused within this many seconds is not pinged: under load, pool_pre_ping's round trip on every
# checkout cost a quarter of the gateway's single-submission throughput. After a pause it is pinged, so a
# database restarted meanwhile costs no error. Restarted under load, each pooled connection reused within the
# second fails once (a 503 with Retry-After in the gateway; a batch left queued for the redrive in a worker)
# and the pool replaces it.
PING_AFTER_IDLE_S = 1.0


def _ping_connections_back_from_idle(engine: Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _stamp_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out a new one.
            raise sa.exc.DisconnectionError("connection lost while idle") from error


def ping(*, conn: Connection) -> None:
    """Run a trivial query; raise if the database cannot answer."""
    conn.execute(sa.text("SELECT 1"))


def pg_copy(*, conn: Connection, target: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into target ("table (columns)") on the connection's own transaction (Postgres only)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
