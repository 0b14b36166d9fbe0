"""What every worker process of the service shares, prediction lane or periodic: its settings, its logging
and its database engine."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery.signals import setup_logging
from sqlalchemy.engine import Engine

from core.logs import configure_logging
from core.settings import Settings, get_settings
from core.storage.engine import make_engine

settings: Settings = get_settings()


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    configure_logging(settings.log_level)


@lru_cache(maxsize=1)
def process_engine() -> Engine:
    """Return this process's database engine (never shared across a fork)."""
    return make_engine(settings.database_url)
