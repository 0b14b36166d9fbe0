"""The course notebook's requests and the pitfalls the course server got wrong, against the schema."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from tests.factories import COURSE_OBSERVATION, observation, prediction_request
from worker.schemas import RequestSchemas


def errors_of(schemas: RequestSchemas, body: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        schemas.prediction.load(body)
    messages = caught.value.messages
    assert isinstance(messages, dict)
    return messages


def observation_errors(schemas: RequestSchemas, **overrides: Any) -> dict[str, Any]:
    errors: dict[str, Any] = errors_of(schemas, prediction_request(**overrides))["observation"]
    return errors


def test_course_example_is_valid(schemas: RequestSchemas) -> None:
    body = prediction_request(id="course-0")
    assert schemas.prediction.load(body) == body


def test_stop_sign_in_other_case_is_rejected_listing_allowed_values(
    schemas: RequestSchemas,
) -> None:
    errors = observation_errors(schemas, StatuteReason="Stop sign")
    assert list(errors) == ["StatuteReason"]
    message = errors["StatuteReason"][0]
    assert message.startswith("Must be one of: ")
    assert "Stop Sign" in message and "Speed Related" in message


def test_my_observation_instead_of_observation_is_rejected(schemas: RequestSchemas) -> None:
    errors = errors_of(schemas, {"id": "x", "my_observation": dict(COURSE_OBSERVATION)})
    assert errors == {
        "observation": ["Missing data for required field."],
        "my_observation": ["Unknown field."],
    }


def test_missing_columns_are_each_reported(schemas: RequestSchemas) -> None:
    partial = observation()
    del partial["hour"], partial["SubjectAge"]
    errors = errors_of(schemas, {"id": "x", "observation": partial})["observation"]
    assert errors == {
        "hour": ["Missing data for required field."],
        "SubjectAge": ["Missing data for required field."],
    }


def test_course_nonsense_values_are_all_reported_at_once(schemas: RequestSchemas) -> None:
    errors = observation_errors(
        schemas,
        InterventionReasonCode="A",
        SubjectRaceCode="Z",
        SubjectSexCode="C",
        SubjectEthnicityCode="D",
        StatuteReason="E",
        SearchAuthorizationCode="F",
        hour=90,
        day_of_week="potato",
    )
    assert set(errors) == {
        "InterventionReasonCode",
        "SubjectRaceCode",
        "SubjectSexCode",
        "SubjectEthnicityCode",
        "StatuteReason",
        "SearchAuthorizationCode",
        "hour",
        "day_of_week",
    }
    assert errors["hour"] == ["Must be greater than or equal to 0 and less than or equal to 23."]
    assert "Monday" in errors["day_of_week"][0] and "Sunday" in errors["day_of_week"][0]
    assert errors["SubjectSexCode"] == ["Must be one of: F, M."]


def test_age_in_words_is_not_an_age(schemas: RequestSchemas) -> None:
    assert observation_errors(schemas, SubjectAge="twenty") == {"SubjectAge": ["Not a valid integer."]}


@pytest.mark.parametrize("age", ["20", 20.5, 20.0, True])
def test_age_must_be_a_json_integer(schemas: RequestSchemas, age: Any) -> None:
    assert list(observation_errors(schemas, SubjectAge=age)) == ["SubjectAge"]


@pytest.mark.parametrize("age", [9, 101, -1])
def test_age_outside_training_range_is_rejected(schemas: RequestSchemas, age: int) -> None:
    errors = observation_errors(schemas, SubjectAge=age)
    assert errors == {"SubjectAge": ["Must be greater than or equal to 10 and less than or equal to 100."]}


@pytest.mark.parametrize("hour", [0, 23])
def test_hour_bounds_are_valid(schemas: RequestSchemas, hour: int) -> None:
    body = prediction_request(hour=hour)
    assert schemas.prediction.load(body)["observation"]["hour"] == hour


@pytest.mark.parametrize("hour", [24, -1, True, "10", 10.5])
def test_hour_out_of_range_or_not_integer_is_rejected(schemas: RequestSchemas, hour: Any) -> None:
    assert list(observation_errors(schemas, hour=hour)) == ["hour"]


@pytest.mark.parametrize("flag", [1, 0, "true", "True", None])
def test_resident_indicator_accepts_only_json_booleans(schemas: RequestSchemas, flag: Any) -> None:
    assert list(observation_errors(schemas, ResidentIndicator=flag)) == ["ResidentIndicator"]


def test_extra_column_is_rejected(schemas: RequestSchemas) -> None:
    assert observation_errors(schemas, Department="New Haven") == {"Department": ["Unknown field."]}


def test_null_values_are_rejected_with_a_clear_message(schemas: RequestSchemas) -> None:
    errors = observation_errors(schemas, StatuteReason=None, SubjectAge=None)
    assert errors == {
        "StatuteReason": ["Field may not be null."],
        "SubjectAge": ["Field may not be null."],
    }


@pytest.mark.parametrize("value", [[], "text", 5, None])
def test_observation_must_be_an_object(schemas: RequestSchemas, value: Any) -> None:
    errors = errors_of(schemas, {"id": "x", "observation": value})
    expected = "Field may not be null." if value is None else "Must be a JSON object."
    assert errors["observation"] in ([expected], {"_schema": [expected]})


@pytest.mark.parametrize("body", [[prediction_request()], 42, "text"])
def test_body_must_be_an_object(schemas: RequestSchemas, body: Any) -> None:
    assert errors_of(schemas, body) == {"_schema": ["Must be a JSON object."]}


@pytest.mark.parametrize("bad_id", [0, "", "x" * 129, "line\nbreak", None, ".", ".."])
def test_id_must_be_a_printable_string_of_1_to_128(schemas: RequestSchemas, bad_id: Any) -> None:
    assert list(errors_of(schemas, prediction_request(id="placeholder") | {"id": bad_id})) == ["id"]


@pytest.mark.parametrize("dotted", ["x/../b", "a/./b", "/..", "../x", "x/..", "a/b/./c"])
def test_id_with_a_dot_segment_is_rejected_saying_why(schemas: RequestSchemas, dotted: str) -> None:
    [message] = errors_of(schemas, prediction_request(id=dotted))["id"]
    assert message.startswith("Must not contain '.' or '..' as a path segment")


@pytest.mark.parametrize("slashed", ["a/b", "/a", "a//b", "a/", "a.b/c..d", "a/.../b"])
def test_id_with_slashes_but_no_dot_segment_is_valid(schemas: RequestSchemas, slashed: str) -> None:
    assert schemas.prediction.load(prediction_request(id=slashed))["id"] == slashed


def test_id_of_128_characters_is_valid(schemas: RequestSchemas) -> None:
    assert schemas.prediction.load(prediction_request(id="x" * 128))["id"] == "x" * 128


@pytest.mark.parametrize(("sent", "stored"), [(True, True), (False, False), (1, True), (0, False)])
def test_feedback_accepts_booleans_and_0_or_1(schemas: RequestSchemas, sent: Any, stored: bool) -> None:
    assert schemas.feedback.load({"id": "a", "true_class": sent}) == {
        "id": "a",
        "true_class": stored,
    }


@pytest.mark.parametrize("sent", [2, "1", "true", None, 1.0])
def test_feedback_rejects_other_outcomes(schemas: RequestSchemas, sent: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        schemas.feedback.load({"id": "a", "true_class": sent})
    assert list(caught.value.messages) == ["true_class"]


def test_every_category_in_the_spec_is_accepted(schemas: RequestSchemas, feature_spec: Any) -> None:
    for column in feature_spec.columns:
        for value in column.allowed:
            schemas.observation.load(observation(**{column.name: value}))
