"""Shed submissions while the backlog is over its bounds: 503 with Retry-After, before the disk fills.

Each gateway process reads the backlog from the database in a thread of its own every BACKLOG_CHECK_S, so
requests never pay for the count (on a backlog of a million rows it takes a tenth of a second). Too many rows
queued sheds both lanes (the disk is shared); a lane whose oldest row is too old sheds only its own
submissions, so an old bulk backlog never refuses a single submission.
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings
from core.storage.backlog import LANES, Backlog, backlog
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
        self._reasons: dict[str, str] = {}
        self._thread = EveryProcess("backlog-guard", settings.backlog_check_s, self.check_now)
        self._outage = OutageLog(log, "backlog guard")

    def refusal(self, lane: str | None = None) -> str | None:
        """Return why submissions to a lane (None: to either) are refused now, or None to accept them."""
        self._thread.ensure_started(self._first_check)
        if lane is None:
            return next(iter(self._reasons.values()), None)
        return self._reasons.get(lane)

    def reasons_for(self, state: Backlog) -> dict[str, str]:
        """Return why a backlog in this state refuses each lane's submissions (no key: accepted)."""
        if state.queued > self._max_queued:
            full = f"The backlog is full ({state.queued} observations queued, at most {self._max_queued})."
            return dict.fromkeys(LANES, full)
        reasons = {}
        for lane, rows in state.lanes.items():
            if rows.oldest_queued_at is not None:
                age = (utc_now() - rows.oldest_queued_at).total_seconds()
                if age > self._max_age_s:
                    waited = f"its oldest observation has waited {age:.0f} s"
                    reasons[lane] = f"The {lane} lane's backlog is too old ({waited})."
        return reasons

    def check_now(self) -> None:
        """Read the backlog and update the decision (a database that cannot answer changes nothing)."""
        try:
            with self._engine.connect() as conn:
                reasons = self.reasons_for(backlog(conn=conn))
        except SQLAlchemyError:
            self._outage.failed()
            return
        self._outage.answered()
        if reasons != self._reasons:
            log.warning("backlog guard: %s", "shedding submissions" if reasons else "accepting again",
                        extra={"reasons": reasons})  # fmt: skip
        self._reasons = reasons

    def stop(self) -> None:
        """Stop reading the backlog (for apps built in-process)."""
        self._thread.stop()

    def _first_check(self) -> None:
        self._reasons = {}  # a forked process does not inherit its parent's decision
        self.check_now()


def refuse_if_shedding(guard: BacklogGuard, lane: str) -> None:
    """Raise 503 with Retry-After while the backlog is over its bounds for this lane (nothing is stored)."""
    reason = guard.refusal(lane)
    if reason is not None:
        SHED_SUBMISSIONS.inc()
        raise ApiError(
            503, f"{reason} Submissions resume once the workers catch up.", retry_after_s=SHED_RETRY_AFTER_S
        )
