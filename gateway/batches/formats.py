"""Parse bulk uploads as streams (a JSON document, NDJSON lines, CSV rows typed by the spec); count first.

Whatever an upload's shape, what one request holds in memory is bounded before anything is parsed whole:
a JSON document may nest at most MAX_JSON_DEPTH containers and hold no token longer than about two windows of
WINDOW_BYTES; an NDJSON line or CSV line is read at most max_line_bytes at a time.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from itertools import count
from typing import IO, Any

import ijson

from core.feature_spec import FeatureColumn, FeatureSpec
from gateway.batches.intake import RawItem
from gateway.bodies import parse_json, repeated_names
from gateway.errors import ApiError

NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl"}
CSV_TYPES = {"text/csv"}
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _json_error(error: Exception) -> ApiError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ApiError(400, f"The request body is not valid JSON: {reason}")


VALUE_EVENTS = frozenset({"start_map", "start_array", "string", "number", "boolean", "null"})
# {"observations": [{"id": …, "observation": {"hour": 10, …}}]} is four containers deep; an item whose values
# nest a little is that item's rejection, anything deeper is not a batch document.
MAX_JSON_DEPTH = 8
# What ijson reads at a time. A batch document's strings are ids and category values: each window of it holds
# quotes. A window without one is inside a token the parser would hold whole, and slowly (100 MB: 52 s).
WINDOW_BYTES = 1 << 16


class QuotedWindows:
    """Hand a JSON document to the parser a window at a time, refusing a window that is one long token."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = WINDOW_BYTES) -> bytes:
        window = self._stream.read(size)
        # A quote not preceded by a backslash ends or starts a string; an escaped one does neither.
        if len(window) >= WINDOW_BYTES and window.count(b'"') <= window.count(b'\\"'):
            raise ApiError(
                400,
                f"The request body holds a string, number or run of blanks longer than {WINDOW_BYTES} bytes; "
                "a batch document holds only short values.",
            )
        return window


def _nested_too_deeply() -> ApiError:
    return ApiError(
        400,
        f"The request body nests more than {MAX_JSON_DEPTH} levels deep; "
        'send {"observations": [{"id", "observation"}, ...]} with plain values.',
    )


def count_json_document(stream: IO[bytes]) -> int:
    """Check a {"observations": [...]} body whole, streamed (syntax, shape, depth, repeated keys); count it.

    400 if it is not JSON, nests too deeply, holds an overlong token or repeats a key, 422 if it is not that
    shape: before anything is stored. Memory stays bounded whatever the document's shape: the parser's events
    carry no path (a path per event grows with the square of the depth: 21 GB for a 200 KB body).
    """
    if not stream.read(1):
        raise ApiError(400, "The request body is empty; send a JSON object.")
    stream.seek(0)
    open_maps: list[set[str] | None] = []  # one entry per open container; None for an array
    top_level: list[str] = []
    kinds: dict[str, str] = {}  # the first value at "" and at "observations": what each is
    key = ""  # the key of the top-level member being read
    items = 0
    try:
        for event, value in ijson.basic_parse(QuotedWindows(stream), buf_size=WINDOW_BYTES):
            depth = len(open_maps)
            if event == "map_key":
                keys = open_maps[-1]
                assert keys is not None  # a key is only ever read inside an object
                if value in keys:
                    raise ApiError(400, f"The request body is not valid JSON: repeated key {value!r}")
                keys.add(value)
                if depth == 1:
                    key = value
                    top_level.append(value)
                continue
            if depth <= 2 and event in VALUE_EVENTS:  # what the top level, a member or an item is
                if depth == 0:
                    kinds.setdefault("", event)
                elif depth == 1 and open_maps[0] is not None:
                    kinds.setdefault(key, event)
                elif key == "observations" and open_maps[1] is None:
                    items += 1
            if event == "start_map" or event == "start_array":
                if depth >= MAX_JSON_DEPTH:
                    raise _nested_too_deeply()
                open_maps.append(set() if event == "start_map" else None)
            elif event == "end_map" or event == "end_array":
                open_maps.pop()
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


def _bounded_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[bytes | None]:
    """Yield each line of a binary stream, or None for a line over max_line_bytes (skipped, never held)."""
    while line := stream.readline(max_line_bytes + 1):
        if len(line) <= max_line_bytes or line.endswith(b"\n"):
            yield line
            continue
        while (rest := stream.readline(max_line_bytes)) and not rest.endswith(b"\n"):
            pass
        yield None


def count_ndjson(stream: IO[bytes], max_line_bytes: int) -> int:
    """Count the items of an NDJSON body (its non-blank lines), reading at most max_line_bytes at a time."""
    return sum(1 for line in _bounded_lines(stream, max_line_bytes) if line is None or line.strip())


def _csv_lines(text: IO[str], max_line_bytes: int) -> Iterator[str]:
    """Yield the lines of a CSV body as csv reads them; 400 for a line over max_line_bytes characters."""
    while line := text.readline(max_line_bytes + 1):
        if len(line) > max_line_bytes:
            raise ApiError(
                400, f"The CSV body cannot be read: a line is longer than {max_line_bytes} characters."
            )
        yield line


def count_csv(stream: IO[bytes], spec: FeatureSpec, max_line_bytes: int) -> int:
    """Check the header of a CSV body and count its data rows (blank lines skipped); 400 if unreadable."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(_csv_lines(text, max_line_bytes))
    try:
        _checked_header(reader, spec)
        return sum(1 for row in reader if row)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiError(400, f"The CSV body cannot be read: {exc}") from None
    finally:
        text.detach()  # the stream is read again


def iter_ndjson(stream: IO[bytes], max_line_bytes: int) -> Iterator[RawItem]:
    """Yield one item per non-blank line; a line that is not JSON, or too long, becomes a rejected item."""
    index = 0
    for raw_line in _bounded_lines(stream, max_line_bytes):
        if raw_line is None:
            yield RawItem(index=index, parse_errors={"_schema": [f"Longer than {max_line_bytes} bytes."]})
            index += 1
            continue
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


def iter_csv(stream: IO[bytes], spec: FeatureSpec, max_line_bytes: int) -> Iterator[RawItem]:
    """Yield one item per CSV row; the header must hold `id` and every feature column."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")  # spreadsheets write a BOM
    reader = csv.reader(_csv_lines(text, max_line_bytes))
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
