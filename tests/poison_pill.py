"""Loaded into the test stack's worker (celery --include): an observation whose id starts with "poison-" kills
the pool process predicting it, as a segfault or the out-of-memory killer would. No other id is touched."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

from core.storage.records import QueuedObservation
from worker import predicting

POISON_PREFIX = "poison-"
_predict = predicting.predict_observations


def _dies_on_poison(bundle: Any, observations: Sequence[QueuedObservation]) -> Any:
    if any(o.id.startswith(POISON_PREFIX) for o in observations):
        os.kill(os.getpid(), signal.SIGKILL)
    return _predict(bundle, observations)


predicting.predict_observations = _dies_on_poison
