"""The database's clock: publish times are stamped and compared on it, whichever host stamps or compares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.records import as_utc

# SQLite's own clock, in the text form SQLAlchemy stores its datetimes in (so they compare as text).
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f"


def database_now(*, conn: Connection) -> Any:
    """Return an SQL expression for the database's current time (the statement's, not the transaction's)."""
    if conn.dialect.name == "postgresql":
        return sa.func.statement_timestamp()
    return sa.func.strftime(_SQLITE_FORMAT, "now")


def database_time_ago(*, conn: Connection, seconds: float) -> Any:
    """Return an SQL expression for the database's time, seconds ago."""
    if conn.dialect.name == "postgresql":
        return sa.func.statement_timestamp() - sa.func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))
    return sa.func.strftime(_SQLITE_FORMAT, "now", f"-{float(seconds)} seconds")


def read_database_now(*, conn: Connection) -> datetime:
    """Return the database's current time, aware UTC (what the times stamped on its clock compare with)."""
    value = conn.execute(sa.select(database_now(conn=conn))).scalar_one()
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))
