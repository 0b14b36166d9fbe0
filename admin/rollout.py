"""Roll out model versions: python -m admin.rollout status | canary VERSION --percent N | promote |
rollback | stable VERSION | shadow VERSION | shadow-off | reassign VERSION [--to VERSION].

The same checks and the same transaction as the admin API's /models endpoints, on the database of
DATABASE_URL and the bundles of ARTIFACTS_DIR. Gateways follow a change within ROLLOUT_CHECK_S; workers load
a new bundle on first use: nothing restarts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from admin.reassignment import reassign_rows
from core.feature_spec import BundleError
from core.rollout.admin import RolloutPlace, change_rollout, model_catalog
from core.rollout.catalog import BundleRefused
from core.rollout.serving_versions import pinned_versions, settings_version
from core.rollout.state import CANARY, PROMOTE, ROLLBACK, SET, SHADOW, SHADOW_OFF, Rollout, RolloutError
from core.settings import get_settings
from core.storage.engine import make_engine

EXIT_OK, EXIT_FAILED = 0, 1


def _describe(rollout: Rollout) -> str:
    shadow = "" if rollout.shadow_version is None else f"; shadow {rollout.shadow_version} (serves nothing)"
    if rollout.canary_version is None:
        return f"stable {rollout.stable_version} (every id){shadow}"
    canary = f"canary {rollout.canary_version} on {rollout.canary_percent} % of ids"
    return f"stable {rollout.stable_version}, {canary}{shadow}"


def show_status(_args: argparse.Namespace, engine: Engine, place: RolloutPlace) -> int:
    """Print what serves, the bundles on disk (and why one may not serve), and the last changes."""
    catalog = model_catalog(engine=engine, place=place)
    source = "stored" if catalog.stored else "from the settings: no rollout stored yet"
    print(f"serving: {_describe(catalog.rollout)} ({source})")
    print("version\tprecision\tbar\tproblem")
    for bundle in catalog.bundles:
        print(
            f"{bundle.version}\t{bundle.held_out_precision}\t{bundle.precision_bar}\t{bundle.problem or '-'}"
        )
    for event in catalog.history:
        at = event.at.isoformat(timespec="seconds")
        print(f"{at}\t{event.action}\t{event.by or '-'}\t{_describe(event.rollout)}")
    return EXIT_OK


def _change(action: str) -> Callable[[argparse.Namespace, Engine, RolloutPlace], int]:
    def run(args: argparse.Namespace, engine: Engine, place: RolloutPlace) -> int:
        version, percent = getattr(args, "version", None), getattr(args, "percent", 0)
        try:
            rollout = change_rollout(
                engine=engine, place=place, action=action, version=version, percent=percent, by=args.by
            )
        except (BundleRefused, RolloutError) as exc:
            print(f"rollout: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"serving: {_describe(rollout)}", file=sys.stderr)
        return EXIT_OK

    return run


def reassign(args: argparse.Namespace, engine: Engine, place: RolloutPlace) -> int:
    """Move the queued rows a version accepted to another version (or fail those its schema refuses)."""
    try:
        done = reassign_rows(
            engine=engine,
            place=place,
            from_version=args.version,
            to_version=args.to,
            settle_s=2 * get_settings().rollout_check_s,
        )
    except (BundleError, RolloutError, ValueError) as exc:
        print(f"rollout: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"reassigned: {done.moved} queued rows of {done.from_version} to {done.to_version}; "
        f"{done.failed} failed (refused by its schema)",
        file=sys.stderr,
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m admin.rollout", description=__doc__)
    parser.add_argument(
        "--by", default="cli", help="who makes the change, for the audit trail (default: cli)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="what serves, the bundles, the last changes").set_defaults(
        run=show_status
    )
    canary = commands.add_parser("canary", help="send a share of the ids to a version")
    canary.add_argument("version")
    canary.add_argument("--percent", type=int, required=True, help="0 to 100")
    canary.set_defaults(run=_change(CANARY))
    commands.add_parser("promote", help="make the canary the stable version").set_defaults(
        run=_change(PROMOTE)
    )
    commands.add_parser("rollback", help="drop the canary").set_defaults(run=_change(ROLLBACK))
    stable = commands.add_parser("stable", help="serve every id with a version")
    stable.add_argument("version")
    stable.set_defaults(run=_change(SET))
    shadow = commands.add_parser("shadow", help="predict every observation with a version too, serving none")
    shadow.add_argument("version")
    shadow.set_defaults(run=_change(SHADOW))
    commands.add_parser("shadow-off", help="stop the shadow predictions").set_defaults(
        run=_change(SHADOW_OFF)
    )
    moving = commands.add_parser(
        "reassign", help="give the queued rows of a version that cannot serve to another (default: stable)"
    )
    moving.add_argument("version", help="the version whose queued rows wait for a bundle that cannot load")
    moving.add_argument("--to", help="the version to give them to (default: the stable version)")
    moving.set_defaults(run=reassign)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command against the configured database and bundles; exit 0 done, 1 refused or failed."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        default = settings_version(settings)
    except BundleError as exc:
        print(f"rollout: {exc}", file=sys.stderr)
        return EXIT_FAILED
    place = RolloutPlace(settings.artifacts_dir, default, pinned_versions(settings, default))
    engine = make_engine(settings.database_url)
    try:
        run: Callable[[argparse.Namespace, Engine, RolloutPlace], int] = args.run
        return run(args, engine, place)
    except SQLAlchemyError as exc:
        print(
            f"rollout: the database cannot answer ({type(exc).__name__}); is it up and migrated "
            "(python -m core.storage.migrate)?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
