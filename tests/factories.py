"""Build valid requests and observations for tests, with overrides."""

from __future__ import annotations

import itertools
import uuid
from typing import Any, cast

import pandas as pd

from devstack.course import COURSE_OBSERVATION as COURSE_OBSERVATION  # tests import it from here too

_counter = itertools.count()


def new_id(prefix: str = "obs") -> str:
    """Return an observation id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}-{next(_counter)}"


def observation(**overrides: Any) -> dict[str, Any]:
    """Return the course's valid observation with some features replaced."""
    return {**COURSE_OBSERVATION, **overrides}


def prediction_request(id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Return a valid POST /predict body."""
    return {"id": id or new_id(), "observation": observation(**overrides)}


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a frame's rows as dicts (pandas types their keys Hashable; these frames' columns are names)."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))
