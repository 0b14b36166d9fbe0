"""Manage API keys: python -m admin.keys create --name NAME --scopes submit,read | revoke NAME | list.

The key is printed once, by create, and never stored: the database keeps its SHA-256. Keys act on the
database of DATABASE_URL; run the migrations first (python -m core.storage.migrate).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.api_keys import PREFIX_LENGTH, SCOPES, key_digest, new_api_key, parse_scopes
from core.settings import get_settings
from core.storage.api_keys import ApiKeyRecord, insert_api_key, list_api_keys, revoke_api_key
from core.storage.engine import make_engine
from core.storage.records import utc_now

KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
EXIT_OK, EXIT_FAILED = 0, 1


def _key_name(text: str) -> str:
    """Return a key name that fits the column and reads well in logs, or refuse it."""
    if not KEY_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError("1 to 64 of letters, digits, '.', '_' and '-'")
    return text


def _scopes(text: str) -> frozenset[str]:
    """Return the scopes of a comma-separated list, or refuse it."""
    try:
        return parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _describe(record: ApiKeyRecord) -> str:
    """Return one tab-separated line about a key, without the key."""
    revoked = record.revoked_at.isoformat(timespec="seconds") if record.revoked_at else "-"
    created = record.created_at.isoformat(timespec="seconds")
    return f"{record.name}\t{record.prefix}…\t{','.join(sorted(record.scopes))}\t{created}\t{revoked}"


def create_key(args: argparse.Namespace, engine: Engine) -> int:
    """Create a key with the given name and scopes and print it (the only time it is shown)."""
    key = new_api_key()
    with engine.begin() as conn:
        created = insert_api_key(
            conn=conn,
            name=args.name,
            prefix=key[:PREFIX_LENGTH],
            key_sha256=key_digest(key),
            scopes=args.scopes,
            now=utc_now(),
        )
    if not created:
        print(f"keys: a key named {args.name!r} exists (revoked keys keep their name)", file=sys.stderr)
        return EXIT_FAILED
    scopes = ", ".join(sorted(args.scopes))
    print(f"created key {args.name!r} ({scopes}); it is shown once, store it now:", file=sys.stderr)
    print(key)
    return EXIT_OK


def revoke_key(args: argparse.Namespace, engine: Engine) -> int:
    """Revoke the named key; gateways refuse it once their cached lookup expires (API_KEY_CACHE_S)."""
    with engine.begin() as conn:
        record = revoke_api_key(conn=conn, name=args.name, now=utc_now())
    if record is None:
        print(f"keys: no key named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    assert record.revoked_at is not None  # just set, or set before
    print(f"key {args.name!r} revoked at {record.revoked_at.isoformat(timespec='seconds')}", file=sys.stderr)
    return EXIT_OK


def list_keys(_args: argparse.Namespace, engine: Engine) -> int:
    """Print every key (never the key itself): name, prefix, scopes, created and revoked times."""
    with engine.connect() as conn:
        records = list_api_keys(conn=conn)
    print("name\tprefix\tscopes\tcreated_at\trevoked_at")
    for record in records:
        print(_describe(record))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m admin.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", type=_key_name, required=True, help="who or what uses the key")
    create.add_argument(
        "--scopes",
        type=_scopes,
        required=True,
        help=f"comma-separated, of {', '.join(SCOPES)}: submit POST /predict and /batches; read GET "
        "/predictions and /batches; label POST /update; admin /performance and everything",
    )
    create.set_defaults(run=create_key)
    revoke = commands.add_parser("revoke", help="revoke a key (it keeps its name)")
    revoke.add_argument("name", type=_key_name)
    revoke.set_defaults(run=revoke_key)
    commands.add_parser("list", help="list keys, revoked ones included").set_defaults(run=list_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one keys command against the configured database; exit 0 done, 1 failed."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace, Engine], int] = args.run
    engine = make_engine(get_settings().database_url)
    try:
        return run(args, engine)
    except SQLAlchemyError as exc:
        print(
            f"keys: the database cannot answer ({type(exc).__name__}); is it up and migrated "
            "(python -m core.storage.migrate)?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
