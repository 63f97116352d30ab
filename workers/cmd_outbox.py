"""Subcommand ``outbox status PATH``: what a producer's durable outbox still holds.

It reads the SQLite file only (read-only, safe while the producer runs) and needs no
Redis: an operator checks it exactly when Redis is the problem.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis


def cmd_outbox_status(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.producers.outbox import rejected_count, status

    owners = status(args.path)
    pending = sum(o.pending for o in owners)
    oldest = max((o.oldest_age_s for o in owners), default=None)
    rejected = rejected_count(args.path)
    if args.json:
        doc = {
            "path": args.path,
            "pending": pending,
            "oldest_age_s": None if oldest is None else round(oldest, 3),
            "rejected": rejected,
            "owners": [
                {"owner": o.owner, "pending": o.pending, "oldest_age_s": round(o.oldest_age_s, 3)}
                for o in owners
            ],
        }
        print(json.dumps(doc))
        return 0
    if not owners:
        print(f"{args.path}: empty (nothing waiting for Redis); {rejected} refused by Redis")
        return 0
    print(f"{args.path}: {pending} pending appends, oldest {_age(oldest or 0.0)} old")
    width = max(len("owner"), *(len(o.owner) for o in owners))
    print(f"{'owner':<{width}}  {'pending':>8}  oldest")
    for o in owners:
        print(f"{o.owner:<{width}}  {o.pending:>8}  {_age(o.oldest_age_s)}")
    if rejected:
        print(f"{rejected} appends were refused by Redis (kept an hour with their reasons)")
    return 0


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("outbox", help="inspect a producer's durable outbox file")
    actions = p.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    s = actions.add_parser(
        "status",
        parents=[common],
        help="pending appends per owner and the oldest one's age (reads the file only)",
    )
    s.add_argument("path", help="the outbox file given to Producer(outbox=...)")
    s.add_argument("--json", action="store_true", help="one JSON document")
    s.set_defaults(handler=cmd_outbox_status)
