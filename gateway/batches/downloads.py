"""A batch's downloads: its results as CSV cells a spreadsheet shows as text, and lines sent in blocks."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from typing import Any

from gateway.responses import batch_result_schema

RESULT_COLUMNS = [field.data_key or name for name, field in batch_result_schema.dump_fields.items()]
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"), after any
# blanks, and in their fullwidth or small forms too (U+FF1D, U+FE66: NFKC makes them "=").
FORMULA_STARTS = ("=", "+", "-", "@")
CONTROL_STARTS = ("\t", "\r", "\n")
# The quote a spreadsheet hides; written before a formula, and doubled before a text that began with one,
# so the first quote of a cell is always ours: drop one leading quote and the text is the service's.
ESCAPE = "'"


def spreadsheet_cell(value: Any) -> Any:
    """Return a CSV cell value a spreadsheet shows as text: a leading quote before a would-be formula."""
    if isinstance(value, bool):
        return str(value).lower()  # as the input CSV writes them
    if isinstance(value, str) and _needs_escape(value):
        return ESCAPE + value
    return value


def _needs_escape(text: str) -> bool:
    if text.startswith((ESCAPE, *CONTROL_STARTS)):
        return True
    shown = text if text.isascii() else unicodedata.normalize("NFKC", text)
    return shown.lstrip().startswith(FORMULA_STARTS)


def csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Yield the CSV text of dumped results: the header row, then a row each, cells shown as text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: spreadsheet_cell(v) for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def in_blocks(lines: Iterator[str], size: int = 65536) -> Iterator[str]:
    """Group lines into blocks of about size characters, so a large download is not one write per row."""
    block: list[str] = []
    length = 0
    for line in lines:
        block.append(line)
        length += len(line)
        if length >= size:
            yield "".join(block)
            block, length = [], 0
    if block:
        yield "".join(block)
