"""The course's synchronous server, rebuilt on the same bundle and database for a fair baseline.

Flask validates the observation, builds a one-row DataFrame, calls predict_proba inline and INSERTs one row
per request; served by gunicorn with two sync workers (`gunicorn -w 2 bench.baseline_app:app`).
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError

from core.frames import build_frame
from core.settings import get_settings
from core.storage.engine import make_engine
from core.storage.measurement import insert_predicted
from core.storage.records import PredictionResult, utc_now
from worker.bundle import limit_native_threads, load_bundle
from worker.schemas import request_schemas

settings = get_settings()
# The same thread cap the service's workers use: without it two sync workers stall each other for seconds.
limit_native_threads(settings.model_threads)
bundle = load_bundle(settings.artifacts_dir, settings.model_version)
schemas = request_schemas(bundle.spec)
engine = make_engine(settings.database_url)
app = Flask(__name__)


@app.post("/predict")
def predict() -> tuple[Response, int]:
    """Validate, predict inline, store, answer with the prediction."""
    try:
        body = schemas.prediction.load(request.get_json())
    except ValidationError as error:
        return jsonify({"error": error.messages}), 422
    proba = float(bundle.predict_proba(build_frame([body["observation"]], bundle.spec))[0])
    prediction = proba >= bundle.threshold
    with engine.begin() as conn:
        insert_predicted(
            conn=conn,
            observation_id=body["id"],
            observation=body["observation"],
            result=PredictionResult(id=body["id"], proba=proba, prediction=prediction),
            model_version=bundle.version,
            now=utc_now(),
        )
    return jsonify({"id": body["id"], "proba": proba, "prediction": prediction}), 200
