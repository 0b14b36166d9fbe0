"""Shed submissions while the backlog is over its bounds: 503 with Retry-After, before the disk fills.

Each gateway process reads the backlog from the database in a thread of its own every BACKLOG_CHECK_S, so
requests never pay for the count (on a backlog of a million rows it takes a tenth of a second).
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings
from core.storage.backlog import Backlog, backlog
from core.storage.records import utc_now
from gateway.errors import ApiError
from gateway.metrics import SHED_SUBMISSIONS
from gateway.server.periodic import EveryProcess, OutageLog

log = logging.getLogger(__name__)
SHED_RETRY_AFTER_S = 30


class BacklogGuard:
    """Tell whether submissions must wait, from the last reading of the backlog."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._max_queued = settings.backlog_max_queued
        self._max_age_s = settings.backlog_max_age_s
        self._reason: str | None = None
        self._thread = EveryProcess("backlog-guard", settings.backlog_check_s, self.check_now)
        self._outage = OutageLog(log, "backlog guard")

    def refusal(self) -> str | None:
        """Return why submissions are refused now, or None to accept them."""
        self._thread.ensure_started(self._first_check)
        return self._reason

    def reason_for(self, state: Backlog) -> str | None:
        """Return why a backlog in this state refuses submissions, or None."""
        if state.queued > self._max_queued:
            return f"The backlog is full ({state.queued} observations queued, at most {self._max_queued})."
        if state.oldest_queued_at is not None:
            age = (utc_now() - state.oldest_queued_at).total_seconds()
            if age > self._max_age_s:
                return f"The backlog is too old (the oldest observation has waited {age:.0f} s)."
        return None

    def check_now(self) -> None:
        """Read the backlog and update the decision (a database that cannot answer changes nothing)."""
        try:
            with self._engine.connect() as conn:
                reason = self.reason_for(backlog(conn=conn))
        except SQLAlchemyError:
            self._outage.failed()
            return
        self._outage.answered()
        if reason != self._reason:
            log.warning("backlog guard: %s", "shedding submissions" if reason else "accepting again",
                        extra={"reason": reason})  # fmt: skip
        self._reason = reason

    def stop(self) -> None:
        """Stop reading the backlog (for apps built in-process)."""
        self._thread.stop()

    def _first_check(self) -> None:
        self._reason = None  # a forked process does not inherit its parent's decision
        self.check_now()


def refuse_if_shedding(guard: BacklogGuard) -> None:
    """Raise 503 with Retry-After while the backlog is over its bounds (nothing is stored)."""
    reason = guard.refusal()
    if reason is not None:
        SHED_SUBMISSIONS.inc()
        raise ApiError(
            503, f"{reason} Submissions resume once the workers catch up.", retry_after_s=SHED_RETRY_AFTER_S
        )
