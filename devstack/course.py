"""The course notebook's valid observation: the request that tests, the bench and examples start from."""

from __future__ import annotations

from typing import Any

COURSE_OBSERVATION: dict[str, Any] = {
    "InterventionReasonCode": "V",
    "SubjectRaceCode": "W",
    "SubjectSexCode": "M",
    "SubjectEthnicityCode": "N",
    "StatuteReason": "Stop Sign",
    "ResidentIndicator": True,
    "SearchAuthorizationCode": "O",
    "SubjectAge": 20,
    "hour": 10,
    "day_of_week": "Monday",
}
