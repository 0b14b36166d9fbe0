"""What an admin sends to change a batch's turn on the bulk lane."""

from __future__ import annotations

from marshmallow import fields, validate

from worker.schemas import StrictSchema

# Priorities an admin may give; uploads start at 0, and a higher one is fed to the workers first.
PRIORITY_RANGE = validate.Range(min=-100, max=100)


class BatchPriorityRequestSchema(StrictSchema):
    """Set a batch's priority: its rows not yet handed to the workers go before those of lower ones."""

    priority = fields.Integer(required=True, strict=True, validate=PRIORITY_RANGE)


batch_priority_request_schema = BatchPriorityRequestSchema()
