"""Shed submissions while the backlog is over its bounds: 503 with Retry-After, before the disk fills.

Each gateway process reads the backlog from the database in a thread of its own every BACKLOG_CHECK_S, so
requests never pay for the count (on a backlog of a million rows it takes a tenth of a second).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings
from core.storage.records import utc_now
from core.storage.reports import Backlog, backlog
from gateway.errors import ApiError
from gateway.metrics import SHED_SUBMISSIONS

log = logging.getLogger(__name__)
SHED_RETRY_AFTER_S = 30


class BacklogGuard:
    """Tell whether submissions must wait, from the last reading of the backlog."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._max_queued = settings.backlog_max_queued
        self._max_age_s = settings.backlog_max_age_s
        self._interval_s = settings.backlog_check_s
        self._pid = -1
        self._lock = threading.Lock()
        self._reason: str | None = None

    def refusal(self) -> str | None:
        """Return why submissions are refused now, or None to accept them."""
        if self._pid != os.getpid():
            self._start()  # first use in this process (gunicorn forks after the app is built)
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
            log.warning("backlog guard: database unreachable", exc_info=True)
            return
        if reason != self._reason:
            log.warning("backlog guard: %s", "shedding submissions" if reason else "accepting again",
                        extra={"reason": reason})  # fmt: skip
        self._reason = reason

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._reason = None
            self.check_now()
            threading.Thread(target=self._run, name="backlog-guard", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval_s)
            self.check_now()


def refuse_if_shedding(guard: BacklogGuard) -> None:
    """Raise 503 with Retry-After while the backlog is over its bounds (nothing is stored)."""
    reason = guard.refusal()
    if reason is not None:
        SHED_SUBMISSIONS.inc()
        raise ApiError(
            503, f"{reason} Submissions resume once the workers catch up.", retry_after_s=SHED_RETRY_AFTER_S
        )
