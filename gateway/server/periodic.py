"""What each gateway process repeats in a thread of its own (reading the backlog, reading the rollout).

The app is built before gunicorn forks, so each process starts its own thread on first use. A database that
cannot answer is logged when it stops answering and when it answers again, not at every reading.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable


class EveryProcess:
    """Call a function every interval_s in a daemon thread of each process that asks for it, until stopped."""

    def __init__(self, name: str, interval_s: float, repeat: Callable[[], None]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._repeat = repeat
        self._pid = -1
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def ensure_started(self, first: Callable[[], None]) -> None:
        """Run first, then start the thread, once per process; callers meanwhile wait for the first run."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            first()
            threading.Thread(target=self._run, name=self._name, daemon=True).start()
            self._pid = os.getpid()

    def stop(self) -> None:
        """Stop the thread after the call under way, if any (for apps built in-process: tests, tools)."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self._repeat()


class OutageLog:
    """Log a database read that fails: once, with the error, when it starts failing; once when it answers."""

    def __init__(self, log: logging.Logger, reader: str) -> None:
        self._log = log
        self._reader = reader
        self._failing = False

    def failed(self) -> None:
        """Note a failed read (call it where the error is handled, so the first one is logged with it)."""
        if not self._failing:
            self._log.warning("%s: database unreachable (logged again once it answers)", self._reader,
                              exc_info=True)  # fmt: skip
            self._failing = True

    def answered(self) -> None:
        """Note a read that succeeded."""
        if self._failing:
            self._log.warning("%s: database answers again", self._reader)
            self._failing = False
