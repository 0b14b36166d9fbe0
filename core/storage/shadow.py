"""Shadow predictions: write what a shadow version predicted beside the serving one, count and purge them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.storage.clock import database_time_ago
from core.storage.monitoring import tally_outcomes
from core.storage.records import PredictionResult
from core.storage.tables import DONE, predictions, shadow_predictions


def save_shadow_predictions(
    *, conn: Connection, results: Sequence[PredictionResult], model_version: str, now: datetime
) -> None:
    """Store the shadow version's results; an observation it already predicted keeps its first result."""
    if not results:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    rows = [
        {
            "id": r.id,
            "model_version": model_version,
            "proba": r.proba,
            "prediction": r.prediction,
            "predicted_at": now,
        }
        for r in sorted(results, key=lambda r: r.id)
    ]
    conn.execute(insert(shadow_predictions).on_conflict_do_nothing(), rows)


@dataclass(frozen=True)
class ShadowCalls:
    """What one shadow version predicted for the observations received in a window, beside what served."""

    model_version: str
    predictions: int
    positive_calls: int
    agreeing: int  # the same call as the version that served the observation


def shadow_calls(*, conn: Connection, window_s: float) -> list[ShadowCalls]:
    """Return, per shadow version, its calls on the observations received in the window and predicted."""
    shadow, served = shadow_predictions, predictions
    positive = sa.case((shadow.c.prediction.is_(True), 1), else_=0)
    agreeing = sa.case((shadow.c.prediction == served.c.prediction, 1), else_=0)
    rows = conn.execute(
        sa.select(shadow.c.model_version, sa.func.count(), sa.func.sum(positive), sa.func.sum(agreeing))
        .select_from(shadow.join(served, served.c.id == shadow.c.id))
        .where(
            served.c.status == DONE, served.c.received_at >= database_time_ago(conn=conn, seconds=window_s)
        )
        .group_by(shadow.c.model_version)
        .order_by(shadow.c.model_version)
    )
    return [
        ShadowCalls(model_version=v, predictions=int(n), positive_calls=int(p or 0), agreeing=int(a or 0))
        for v, n, p, a in rows
    ]


def shadow_outcomes(*, conn: Connection, window_s: float | None = None) -> dict[str, dict[str, int]]:
    """Count the shadow versions' calls against the true outcomes received, as labelled_outcomes does.

    With window_s, only the labels received in that window.
    """
    shadow, served = shadow_predictions, predictions
    query = (
        sa.select(shadow.c.model_version, shadow.c.prediction, served.c.true_class, sa.func.count())
        .select_from(shadow.join(served, served.c.id == shadow.c.id))
        .where(served.c.true_class.is_not(None))
        .group_by(shadow.c.model_version, shadow.c.prediction, served.c.true_class)
    )
    return tally_outcomes(conn=conn, query=query, labelled_at=served.c.labelled_at, window_s=window_s)


def purge_shadow_predictions(*, conn: Connection, older_than_s: float, limit: int) -> int:
    """Delete up to limit shadow predictions made before the cutoff."""
    cutoff = database_time_ago(conn=conn, seconds=older_than_s)
    expired = (
        sa.select(shadow_predictions.c.id, shadow_predictions.c.model_version)
        .where(shadow_predictions.c.predicted_at < cutoff)
        .limit(limit)
    )
    key = sa.tuple_(shadow_predictions.c.id, shadow_predictions.c.model_version)
    return int(conn.execute(shadow_predictions.delete().where(key.in_(expired))).rowcount)
