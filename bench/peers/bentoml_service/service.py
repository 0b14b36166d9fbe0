"""The BentoML peer: the same bundle behind one adaptive-batching endpoint and one task endpoint.

Served by `bentoml serve service:ContrabandModel` in the bench's own BentoML venv (bench/peers/venv.py), so it
imports nothing of this project: the bundle folder comes in PEER_BUNDLE_DIR (the worker processes in
PEER_BENTOML_WORKERS), and the pipeline is loaded with
joblib and fed a DataFrame with the trained dtypes, as a BentoML user would write it.

- POST /predict {"observations": [...]}: adaptive batching merges concurrent requests (a list of one row or
  of many) into one predict_proba call; answers with one {"proba", "prediction"} per row.
- POST /predict_task/submit, GET /predict_task/status?task_id=, GET /predict_task/get?task_id=: the same
  prediction as a BentoML task (the local server keeps task results in SQLite), batched the same way.
"""

import json
import os
from pathlib import Path
from typing import Any, Literal

import bentoml
import joblib
import pandas as pd
from pydantic import BaseModel, Field, create_model

BUNDLE_DIR = Path(os.environ.get("PEER_BUNDLE_DIR", "."))
SPEC = json.loads((BUNDLE_DIR / "feature_spec.json").read_text())
METADATA = json.loads((BUNDLE_DIR / "metadata.json").read_text())
DTYPES = {"category": "str", "boolean": "bool", "integer": "int64"}
# The batch the dispatcher may form, and how long a request may wait in it (a bulk list is split to fit).
MAX_BATCH_SIZE = 1_000
MAX_LATENCY_MS = 10_000
# Two, one per core; the bench serves the task endpoint with one (see bench/peers/runner.py).
WORKERS = int(os.environ.get("PEER_BENTOML_WORKERS", "2"))


def _field(column: dict[str, Any]) -> tuple[Any, Any]:
    """Return the pydantic type of one spec column: its allowed values, or its inclusive bounds."""
    if column["kind"] == "category":
        return Literal[tuple(column["allowed"])], ...
    if column["kind"] == "boolean":
        return bool, ...
    return int, Field(ge=column["minimum"], le=column["maximum"])


# Validation from the same feature spec the service's schemas use: unknown codes and out-of-range ages fail.
Observation: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Observation", **{column["name"]: _field(column) for column in SPEC["columns"]}
)


def _frame(observations: list[BaseModel]) -> pd.DataFrame:
    """Return one row per observation, columns in the spec's order, with the trained dtypes."""
    rows = [observation.model_dump() for observation in observations]
    return pd.DataFrame(
        {
            column["name"]: pd.Series([row[column["name"]] for row in rows], dtype=DTYPES[column["kind"]])
            for column in SPEC["columns"]
        }
    )


@bentoml.service(
    workers=WORKERS,
    traffic={"timeout": 600},
    logging={"access": {"enabled": False}},  # the service's side runs at WARNING too
)
class ContrabandModel:
    """The bundle's pipeline, loaded once per worker process."""

    def __init__(self) -> None:
        self.pipeline = joblib.load(BUNDLE_DIR / "pipeline.joblib")
        self.threshold = float(METADATA["threshold"])

    def _predict(self, observations: list[BaseModel]) -> list[dict[str, Any]]:
        probas = self.pipeline.predict_proba(_frame(observations))[:, 1]
        return [{"proba": float(p), "prediction": bool(p >= self.threshold)} for p in probas]

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)  # type: ignore[untyped-decorator]
    def predict(self, observations: list[Observation]) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        """Predict each observation; concurrent requests are merged into one call."""
        return self._predict(observations)

    @bentoml.task(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)  # type: ignore[untyped-decorator]
    def predict_task(self, observations: list[Observation]) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        """The same prediction, submitted as a task and fetched when done."""
        return self._predict(observations)
