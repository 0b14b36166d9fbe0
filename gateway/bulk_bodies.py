"""Parse bulk uploads as streams: a JSON document, NDJSON lines, or CSV rows typed by the feature spec."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from itertools import count
from typing import IO, Any

from core.feature_spec import FeatureColumn, FeatureSpec
from gateway.bodies import parse_json, read_json_body, repeated_names
from gateway.bulk_intake import RawItem
from gateway.errors import ApiError

NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl"}
CSV_TYPES = {"text/csv"}
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def iter_json_document() -> Iterator[RawItem]:
    """Yield the items of a {"observations": [...]} body."""
    body = read_json_body()
    if not isinstance(body, dict):
        raise ApiError(
            422, "The batch body must be a JSON object.", fields={"_schema": ["Must be a JSON object."]}
        )
    if not isinstance(body.get("observations"), list):
        problem = "Missing data for required field." if "observations" not in body else "Must be a list."
        raise ApiError(
            422, 'Send {"observations": [{"id", "observation"}, ...]}.', fields={"observations": [problem]}
        )
    extra = sorted(set(body) - {"observations"})
    if extra:
        raise ApiError(
            422, "Unknown fields in the batch body.", fields={k: ["Unknown field."] for k in extra}
        )
    for index, value in enumerate(body["observations"]):
        yield RawItem(index=index, value=value)


def iter_ndjson(stream: IO[bytes]) -> Iterator[RawItem]:
    """Yield one item per non-blank line; a line that is not JSON becomes a rejected item."""
    index = 0
    for raw_line in stream:
        line = raw_line.strip()
        if not line:
            continue
        try:
            yield RawItem(index=index, value=parse_json(line))
        except (ValueError, RecursionError) as exc:
            yield RawItem(index=index, parse_errors={"_schema": [f"Not valid JSON: {exc}"]})
        index += 1


def _typed(column: FeatureColumn, text: str) -> Any:
    # Values that do not convert stay strings, so the schema reports them with its usual message.
    if text == "":
        return None
    if column.kind == "integer":
        stripped = text.strip()
        if not WHOLE_NUMBER.fullmatch(stripped):
            return text
        try:
            return int(stripped)
        except ValueError:  # too many digits: the schema says so for this item
            return text
    if column.kind == "boolean":
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return text


def iter_csv(stream: IO[bytes], spec: FeatureSpec) -> Iterator[RawItem]:
    """Yield one item per CSV row; the header must hold `id` and every feature column."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")  # spreadsheets write a BOM
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise ApiError(422, "The CSV body needs a header row with id and the feature columns.") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiError(400, f"The CSV body cannot be read: {exc}") from None
    expected = ["id", *spec.names]
    repeated = repeated_names(header)
    if repeated:
        raise ApiError(
            422,
            f"The CSV header repeats {', '.join(repeated)}.",
            fields={name: ["Repeated column."] for name in repeated},
        )
    missing = [name for name in expected if name not in header]
    unknown = [name for name in header if name not in expected]
    if missing or unknown:
        problems = [f"lacks {', '.join(missing)}"] if missing else []
        problems += [f"has unknown {', '.join(unknown)}"] if unknown else []
        raise ApiError(
            422,
            f"The CSV header {' and '.join(problems)}.",
            fields={name: ["Missing column."] for name in missing}
            | {name: ["Unknown column."] for name in unknown},
        )
    id_index = header.index("id")
    columns = {column.name: column for column in spec.columns}
    positions = count()
    try:
        for row in reader:
            if not row:
                continue  # a blank line, skipped as in NDJSON
            index = next(positions)
            if len(row) != len(header):
                claimed = row[id_index] if id_index < len(row) else None
                errors = {"_schema": [f"Expected {len(header)} cells, got {len(row)}."]}
                yield RawItem(index=index, value={"id": claimed}, parse_errors=errors)
                continue
            cells = dict(zip(header, row, strict=True))
            observation = {
                name: _typed(columns[name], value) if name in columns else value
                for name, value in cells.items()
                if name != "id"
            }
            yield RawItem(index=index, value={"id": cells["id"], "observation": observation})
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiError(400, f"The CSV body cannot be read: {exc}") from None
