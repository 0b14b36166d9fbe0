"""Alembic environment: migrate the database named by DATABASE_URL (or the URL passed in)."""

from __future__ import annotations

from alembic import context

from core.settings import get_settings
from core.storage.engine import make_engine
from core.storage.tables import metadata

url = context.config.attributes.get("database_url") or get_settings().database_url
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
