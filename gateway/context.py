"""What the gateway's routes share: settings, database engine, Celery publisher, feature spec, schemas."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy.engine import Engine

from core.feature_spec import FeatureSpec
from core.monitoring import ServingModel
from core.settings import Settings
from gateway.backlog_guard import BacklogGuard
from gateway.publisher import BackgroundPublisher
from worker.schemas import RequestSchemas

EXTENSION = "predictions"


@dataclass(frozen=True)
class GatewayContext:
    """Per-app dependencies, built once in create_app."""

    settings: Settings
    engine: Engine
    celery: Celery
    publisher: BackgroundPublisher
    spec: FeatureSpec
    schemas: RequestSchemas
    backlog_guard: BacklogGuard
    # The serving bundle's reference distributions and precision bar, for the model's monitoring.
    model: ServingModel


def gateway_context() -> GatewayContext:
    """Return the dependencies of the app handling the current request."""
    context: GatewayContext = current_app.extensions[EXTENSION]
    return context
