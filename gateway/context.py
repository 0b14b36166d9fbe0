"""What the gateway's routes share: settings, database engine, Celery publisher, rollout and schemas."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy.engine import Engine

from core.monitoring.monitored_model import ServingModel, ServingModels
from core.settings import Settings
from gateway.predictions.backlog_guard import BacklogGuard
from gateway.rollout.view import RolloutView
from gateway.server.publisher import BackgroundPublisher
from worker.schemas import RequestSchemas

EXTENSION = "predictions"


@dataclass(frozen=True)
class GatewayContext:
    """Per-app dependencies, built once in create_app."""

    settings: Settings
    engine: Engine
    celery: Celery
    publisher: BackgroundPublisher
    # The settings' version's (MODEL_VERSION or artifacts/current), for feedback bodies, which every version
    # reads alike. Submissions are validated by the version the rollout gives them: rollout.accepting.
    schemas: RequestSchemas
    backlog_guard: BacklogGuard
    rollout: RolloutView
    # Each version's reference distributions and precision bar, for the model's monitoring.
    models: ServingModels

    def close(self) -> None:
        """Stop this app's reading threads and close its database connections (an app built in-process)."""
        self.backlog_guard.stop()
        self.rollout.stop()
        self.engine.dispose()

    def monitored_model(self) -> ServingModel:
        """Return the model monitoring compares with: the rollout's stable version (as last read)."""
        rollout = self.rollout.last_reading()
        # No reading yet and no database: what the settings name.
        return self.models.default if rollout is None else self.models.of(rollout.stable_version)


def gateway_context() -> GatewayContext:
    """Return the dependencies of the app handling the current request."""
    context: GatewayContext = current_app.extensions[EXTENSION]
    return context
