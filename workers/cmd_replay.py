"""Subcommand ``replay``: rebuild every projection (blue/green) or one owner's, in place."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis

from .cmd_basic import add_projections_option


def _confirmed(args: argparse.Namespace) -> bool | None:
    """True to go on, False if the operator said no, None when nobody can be asked."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        return None
    what = f"owner {args.owner}'s projections" if args.owner else "every projection"
    answer = input(f"Rebuild {what} from the logs? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_replay(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.projections.registry import with_extra

    from .cli import settings_from
    from .replay import replay_all
    from .replay_owner import replay_owner

    ok = _confirmed(args)
    if ok is None:
        print(
            "memstream: replay rebuilds projections and needs confirmation; "
            "pass --yes to run it without a terminal",
            file=sys.stderr,
        )
        return 2
    if not ok:
        print("replay cancelled", file=sys.stderr)
        return 1
    settings = settings_from(args)
    projections = with_extra(args.projections)  # a bad spec fails before any work
    if args.owner:
        summary = replay_owner(client, args.owner, settings, projections=projections)
    else:
        # Unset tuning options keep replay's own defaults (one place defines them).
        names = ("grace_s", "catchup_timeout_s")
        tuning = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        summary = replay_all(
            client, settings, projections=projections, show_progress=True, **tuning
        )
    print(summary.text())
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "replay",
        parents=[common],
        help="rebuild projections from the logs (blue/green), or one owner with --owner",
    )
    p.add_argument("--owner", default=None, help="rebuild only this owner, in place")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--grace-s",
        type=float,
        default=None,
        help="how long the old version outlives the flip (default: 1.5, more than "
        "twice the readers' version cache)",
    )
    p.add_argument(
        "--catchup-timeout-s",
        type=float,
        default=None,
        help="give up when live workers have not caught up by then (default: 300)",
    )
    add_projections_option(p)
    p.set_defaults(handler=cmd_replay)
