"""The `contraband` command: submit a CSV of stops in chunks, follow the batches, write the results."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from client.api import PredictionClient, ServiceError

RESULT_COLUMNS = [
    "line",
    "id",
    "status",
    "prediction",
    "proba",
    "model_version",
    "accepted_version",
    "predicted_at",
    "failure_reason",
]
EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 3
API_KEY_VARIABLE = "CONTRABAND_API_KEY"
# What to do about an answer that refuses the key, said after the service's own message.
KEY_HINTS = {
    401: f"give a valid API key with --api-key or the {API_KEY_VARIABLE} environment variable",
    403: "ask for a key with the scope named above (submit uploads; read follows and downloads)",
    429: "the key is over its rate limit: run again once the time named above has passed",
}
SHOWN_REJECTIONS = 50


class InputError(Exception):
    """The input file cannot be submitted as it is."""


@dataclass(frozen=True)
class Chunk:
    """Part of the input file: the CSV to upload (header included) and the file line of each data row."""

    body: bytes
    lines: array[int]


@dataclass(frozen=True)
class SubmittedChunk:
    """One uploaded chunk: its batch and the file line of each of its rows."""

    batch_id: str
    lines: array[int]
    accepted: int


def read_chunks(path: Path, rows_per_chunk: int) -> Iterator[Chunk]:
    """Yield the file in chunks of rows_per_chunk data rows; blank lines are skipped."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path} is empty: it needs a header row with id and the feature columns")
        rows = 0
        while True:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            lines = array("L")
            starts_at = reader.line_num + 1  # a quoted cell may span several lines
            for row in reader:
                if row:
                    writer.writerow(row)
                    lines.append(starts_at)
                    if len(lines) == rows_per_chunk:
                        break
                starts_at = reader.line_num + 1
            if not lines:
                if rows == 0:
                    raise InputError(f"{path} has a header but no data rows")
                return
            rows += len(lines)
            yield Chunk(body=out.getvalue().encode(), lines=lines)


def upload(
    client: PredictionClient, path: Path, rows_per_chunk: int, atomic: bool
) -> tuple[list[SubmittedChunk], int]:
    """Upload the file chunk by chunk, printing rejected rows with their line; return chunks, rejections."""
    chunks: list[SubmittedChunk] = []
    rejected = 0
    with tqdm(desc="upload", unit="row", file=sys.stderr) as bar:
        for chunk in read_chunks(path, rows_per_chunk):
            try:
                receipt = client.submit_csv(chunk.body, atomic=atomic)
            except ServiceError as error:
                if error.status != 422 or "rejected" not in error.error.get("fields", {}):
                    raise
                # An atomic chunk with bad rows: nothing of it was stored.
                fields = error.error["fields"]
                listed = fields["rejected"]
                count = fields.get("rejected_count", len(listed))
                receipt = {"batch_id": None, "accepted": 0, "rejected": listed, "rejected_count": count}
                tqdm.write(f"lines {chunk.lines[0]}-{chunk.lines[-1]}: not stored (atomic)", file=sys.stderr)
            if receipt["batch_id"] is not None:
                chunks.append(SubmittedChunk(receipt["batch_id"], chunk.lines, receipt["accepted"]))
            # The service lists the first rejections of a chunk and counts them all.
            for rejection in receipt["rejected"][: max(SHOWN_REJECTIONS - rejected, 0)]:
                line = chunk.lines[rejection["index"]]
                tqdm.write(f"line {line}: id {rejection['id']!r}: {rejection['errors']}", file=sys.stderr)
            rejected += receipt.get("rejected_count", len(receipt["rejected"]))
            bar.update(len(chunk.lines))
    if rejected > SHOWN_REJECTIONS:
        print(f"... and {rejected - SHOWN_REJECTIONS} more rejected rows", file=sys.stderr)
    return chunks, rejected


def follow(client: PredictionClient, chunks: list[SubmittedChunk], poll_seconds: float) -> int:
    """Show a progress bar until every batch is finished; return how many observations failed."""
    total = sum(chunk.accepted for chunk in chunks)
    with tqdm(desc="predict", total=total, unit="obs", file=sys.stderr) as bar:
        while True:
            states = [client.batch(chunk.batch_id) for chunk in chunks]
            finished = sum(s["counts"]["done"] + s["counts"]["failed"] for s in states)
            bar.update(finished - bar.n)
            if all(s["status"] == "done" for s in states):
                return sum(s["counts"]["failed"] for s in states)
            time.sleep(poll_seconds)


# A text cell starting with one of these runs as a formula in a spreadsheet; a leading quote shows it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    """Write cells as the service's CSV does: booleans as true/false, would-be formulas quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_results(client: PredictionClient, chunks: list[SubmittedChunk], out: Path) -> int:
    """Write every accepted row's result, with its line in the input file; return the rows written."""
    written = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for chunk in chunks:
            for result in client.iter_results(chunk.batch_id):
                cells = {key: _csv_cell(value) for key, value in result.items()}
                writer.writerow({**cells, "line": chunk.lines[result["index"]]})
                written += 1
    return written


def submit(args: argparse.Namespace) -> int:
    """Run `contraband submit`."""
    with PredictionClient(args.url, timeout=args.timeout, api_key=args.api_key) as client:
        chunks, rejected = upload(client, args.csv, args.chunk_rows, args.atomic)
        accepted = sum(chunk.accepted for chunk in chunks)
        print(f"{accepted} rows accepted, {rejected} rejected, in {len(chunks)} batches", file=sys.stderr)
        if not args.wait:
            if args.out is not None:
                print(
                    f"--no-wait: nothing written to {args.out}; results come when the batches finish",
                    file=sys.stderr,
                )
            for chunk in chunks:
                print(chunk.batch_id)
            return EXIT_REJECTED if rejected else EXIT_OK
        failed = follow(client, chunks, args.poll_seconds)
        if args.out is not None:
            written = write_results(client, chunks, args.out)
            print(f"{written} results written to {args.out}", file=sys.stderr)
        else:
            print(
                "no --out given: results not saved (batch ids: " + " ".join(c.batch_id for c in chunks) + ")",
                file=sys.stderr,
            )
        if failed:
            print(f"{failed} observations failed; see failure_reason", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_REJECTED if rejected else EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _writable_file(path: Path) -> Path:
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {path}: {path.parent} is not a writable folder")
    return path


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog="contraband", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    submit_cmd = commands.add_parser("submit", help="submit a CSV file of observations")
    submit_cmd.add_argument("csv", type=Path, help="CSV with an id column and the ten feature columns")
    submit_cmd.add_argument(
        "--out", type=lambda text: _writable_file(Path(text)), help="where to write the results as CSV"
    )
    submit_cmd.add_argument(
        "--url", default="http://127.0.0.1:5000", help="service base URL (default: %(default)s)"
    )
    submit_cmd.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the batches until done (default: --wait)",
    )
    submit_cmd.add_argument("--atomic", action="store_true", help="all-or-nothing per uploaded chunk")
    submit_cmd.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=10_000,
        help="rows per uploaded batch (default: %(default)s)",
    )
    submit_cmd.add_argument(
        "--poll-seconds",
        type=float,
        default=0.5,
        help="seconds between progress reads (default: %(default)s)",
    )
    submit_cmd.add_argument(
        "--timeout", type=float, default=120, help="seconds per HTTP call (default: %(default)s)"
    )
    submit_cmd.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_VARIABLE),
        help=f"API key with the submit and read scopes (default: ${API_KEY_VARIABLE}; prefer the variable: "
        "a command line is visible to other users of the machine)",
    )
    submit_cmd.set_defaults(run=submit)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `contraband` command.

    Exit 0 all done, 3 some rows rejected, 1 failure (unreadable input, service), 2 bad options (argparse).
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ServiceError as exc:
        hint = KEY_HINTS.get(exc.status)
        print(f"contraband: {exc}" + (f"\ncontraband: {hint}" if hint else ""), file=sys.stderr)
        return EXIT_FAILED
    except (InputError, OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"contraband: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
