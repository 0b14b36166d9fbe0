"""The fast check for clean requests agrees with the generated schema on every variation tried."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError

from core.feature_spec import FeatureSpec
from tests.factories import observation, prediction_request
from worker.schemas import RequestSchemas

ODD_VALUES: list[Any] = [None, True, False, 0, 1, -1, 1.0, 20.5, "", "1", "true", "Stop sign", [], {}, 10**20]


def schema_accepts_unchanged(schemas: RequestSchemas, body: Any) -> bool:
    try:
        return bool(schemas.prediction.load(body) == body)
    except ValidationError:
        return False


def variations(spec: FeatureSpec) -> list[Any]:
    bodies: list[Any] = [prediction_request(), [], None, 3, "x", {"id": "x"}, {"observation": observation()}]
    for column in spec.columns:
        candidates = list(ODD_VALUES)
        if column.kind == "category":
            candidates += (
                list(column.allowed) + [v.lower() for v in column.allowed] + [v + " " for v in column.allowed]
            )
        if column.kind == "integer":
            assert column.minimum is not None and column.maximum is not None
            candidates += [column.minimum - 1, column.minimum, column.maximum, column.maximum + 1]
        bodies += [prediction_request(**{column.name: value}) for value in candidates]
        partial = observation()
        del partial[column.name]
        bodies.append({"id": "x", "observation": partial})
    bodies += [
        prediction_request(extra=1),
        {**prediction_request(), "extra": 1},
        {"id": "", "observation": observation()},
        {"id": "x" * 129, "observation": observation()},
        {"id": "a\nb", "observation": observation()},
        {"id": "..", "observation": observation()},
        {"id": ".", "observation": observation()},
        {"id": "/lead", "observation": observation()},
        *(
            {"id": dotted, "observation": observation()}
            for dotted in ("x/../b", "a/./b", "/..", "../x", "x/.")
        ),
        *({"id": slashed, "observation": observation()} for slashed in ("a/b", "a//b", "a/.../b", ".a/b.")),
        {"id": 5, "observation": observation()},
        {"id": "x", "observation": None},
        {"id": "x", "observation": [observation()]},
    ]
    return bodies


def test_fast_check_passes_exactly_what_the_schema_accepts_unchanged(
    schemas: RequestSchemas, feature_spec: FeatureSpec
) -> None:
    checked = 0
    for body in variations(feature_spec):
        assert schemas.is_clean_prediction(body) == schema_accepts_unchanged(schemas, body), body
        checked += 1
    assert checked > 200


def test_load_prediction_gives_the_schemas_answer(schemas: RequestSchemas) -> None:
    body = prediction_request(hour=0)
    assert schemas.load_prediction(body) == schemas.prediction.load(body)
