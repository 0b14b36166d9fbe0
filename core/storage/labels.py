"""Labelled outcomes read back whole: observations whose true class has arrived, to score a model on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.tables import predictions


@dataclass(frozen=True)
class LabelledObservation:
    """One observation with its true outcome, and what the model that served it answered (if any)."""

    id: str
    observation: dict[str, Any]
    true_class: bool
    model_version: str | None
    proba: float | None


def labelled_observations(*, conn: Connection, limit: int) -> list[LabelledObservation]:
    """Return up to limit labelled observations, the most recently labelled first, whatever their status.

    A candidate model predicts them afresh, so an observation counts even if no model answered it.
    """
    rows = conn.execute(
        sa.select(
            predictions.c.id,
            predictions.c.observation,
            predictions.c.true_class,
            predictions.c.model_version,
            predictions.c.proba,
        )
        .where(predictions.c.true_class.is_not(None))
        .order_by(predictions.c.labelled_at.desc(), predictions.c.id)
        .limit(limit)
    )
    return [
        LabelledObservation(
            id=row.id,
            observation=row.observation,
            true_class=bool(row.true_class),
            model_version=row.model_version,
            proba=row.proba,
        )
        for row in rows
    ]
