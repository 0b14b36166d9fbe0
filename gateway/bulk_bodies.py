"""Parse bulk uploads as streams (a JSON document, NDJSON lines, CSV rows typed by the spec); count first."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from itertools import count
from typing import IO, Any

import ijson

from core.feature_spec import FeatureColumn, FeatureSpec
from gateway.bodies import parse_json, repeated_names
from gateway.bulk_intake import RawItem
from gateway.errors import ApiError

NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl"}
CSV_TYPES = {"text/csv"}
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _json_error(error: Exception) -> ApiError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ApiError(400, f"The request body is not valid JSON: {reason}")


ITEM_STARTS = frozenset({"start_map", "start_array", "string", "number", "boolean", "null"})


def count_json_document(stream: IO[bytes]) -> int:
    """Check a {"observations": [...]} body whole, streamed (syntax, shape, repeated keys); count its items.

    400 if it is not JSON or repeats a key, 422 if it is not that shape: before anything is stored.
    """
    if not stream.read(1):
        raise ApiError(400, "The request body is empty; send a JSON object.")
    stream.seek(0)
    open_maps: list[set[str]] = []
    top_level: list[str] = []
    kinds: dict[str, str] = {}  # the first event at "" and at "observations": what each value is
    items = 0
    try:
        for prefix, event, value in ijson.parse(stream):
            if prefix in ("", "observations") and event not in ("map_key", "end_map", "end_array"):
                kinds.setdefault(prefix, event)
            if prefix == "observations.item" and event in ITEM_STARTS:
                items += 1
            if event == "start_map":
                open_maps.append(set())
            elif event == "end_map":
                open_maps.pop()
            elif event == "map_key":
                if value in open_maps[-1]:
                    raise ApiError(400, f"The request body is not valid JSON: repeated key {value!r}")
                open_maps[-1].add(value)
                if prefix == "":
                    top_level.append(value)
    except (ijson.JSONError, ValueError) as error:  # ValueError: a number Python will not convert
        raise _json_error(error) from None
    if kinds.get("") != "start_map":
        raise ApiError(
            422, "The batch body must be a JSON object.", fields={"_schema": ["Must be a JSON object."]}
        )
    return _checked_shape(top_level, kinds.get("observations"), items)


def _checked_shape(top_level: list[str], observations_kind: str | None, items: int) -> int:
    if "observations" not in top_level or observations_kind != "start_array":
        problem = "Missing data for required field." if "observations" not in top_level else "Must be a list."
        raise ApiError(
            422, 'Send {"observations": [{"id", "observation"}, ...]}.', fields={"observations": [problem]}
        )
    extra = sorted(set(top_level) - {"observations"})
    if extra:
        raise ApiError(
            422, "Unknown fields in the batch body.", fields={k: ["Unknown field."] for k in extra}
        )
    return items


def iter_json_document(stream: IO[bytes]) -> Iterator[RawItem]:
    """Yield the items of a {"observations": [...]} body checked by count_json_document, streamed."""
    # Numbers as ijson reads them by default (any integer; Decimal for fractions), as the counting pass does:
    # a number no feature allows is that item's rejection, not an error of the whole upload.
    for index, value in enumerate(ijson.items(stream, "observations.item")):
        yield RawItem(index=index, value=value)


def count_ndjson(stream: IO[bytes]) -> int:
    """Count the items of an NDJSON body (its non-blank lines)."""
    return sum(1 for line in stream if line.strip())


def count_csv(stream: IO[bytes], spec: FeatureSpec) -> int:
    """Check the header of a CSV body and count its data rows (blank lines skipped); 400 if unreadable."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        _checked_header(reader, spec)
        return sum(1 for row in reader if row)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiError(400, f"The CSV body cannot be read: {exc}") from None
    finally:
        text.detach()  # the stream is read again


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


def _checked_header(reader: Iterator[list[str]], spec: FeatureSpec) -> list[str]:
    """Read the CSV header; it must hold `id` and every feature column, once each, and nothing else."""
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
    return header


def iter_csv(stream: IO[bytes], spec: FeatureSpec) -> Iterator[RawItem]:
    """Yield one item per CSV row; the header must hold `id` and every feature column."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")  # spreadsheets write a BOM
    reader = csv.reader(text)
    header = _checked_header(reader, spec)
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
