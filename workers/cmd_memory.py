"""Subcommands for long-term memory: ``forget``, ``extend-ttl`` and ``stats``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from memstream.producers import Producer, Receipt


def cmd_forget(args: argparse.Namespace, client: redis.Redis) -> int:
    from .cli import settings_from
    from .forget import compact, forget_owner, forget_requested

    settings = settings_from(args)
    if args.requested:
        for result in forget_requested(client, settings):
            print(result.text())
        if args.compact:
            print(compact(client))
        return 0
    if args.owner is None:
        print("memstream: forget needs OWNER (or --requested)", file=sys.stderr)
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "memstream: forget deletes the owner's log and memories for good; "
                "pass --yes to run it without a terminal",
                file=sys.stderr,
            )
            return 2
        answer = input(f"Delete every memory and the whole log of {args.owner}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("forget cancelled", file=sys.stderr)
            return 1
    print(forget_owner(client, args.owner, settings).text())
    if args.compact:
        print(compact(client))
    return 0


def cmd_extend_ttl(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.producers import Producer

    from .cli import settings_from

    if args.seconds < 1:
        print("memstream: SECONDS must be at least 1", file=sys.stderr)
        return 2
    with Producer.from_settings(settings_from(args)) as producer:
        receipts = extend_ttl(client, producer, args.owner, args.seconds, session=args.session)
    for receipt in receipts:
        print(f"appended ttl.extended {receipt.log_id}")
    return 0


def extend_ttl(
    client: redis.Redis, producer: Producer, owner: str, seconds: int, *, session: str | None
) -> list[Receipt]:
    """Append ``ttl.extended``: for ``session``, or for each session the owner has (the
    event is per session because projections cannot list sessions when they apply it)."""
    from memstream.producers import TtlExtended, keys
    from memstream.projections.sessions import created_key

    from .replay import read_deployment

    event = TtlExtended(seconds=seconds)
    if session is not None:
        return [producer.append(owner, event, session=keys.check_id(session, "session"))]
    d = read_deployment(client)
    pk = keys.Projection(keys.partition(owner, d.partitions), d.version)
    found: Any = client.zrange(created_key(pk, owner), 0, -1)
    names = [raw.decode() for raw in found] or [None]
    return [producer.append(owner, event, session=name) for name in names]


def cmd_stats(args: argparse.Namespace, client: redis.Redis) -> int:
    from .stats_owner import owner_stats, render

    stats = owner_stats(client, args.owner, sample=args.sample)
    print(json.dumps(stats, indent=2) if args.json else render(stats))
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "forget", parents=[common], help="delete an owner's memories, log and index entries"
    )
    p.add_argument("owner", nargs="?", default=None, help="the owner to forget")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--requested",
        action="store_true",
        help="run the forgets that owner.forgotten events requested",
    )
    p.add_argument(
        "--compact",
        action="store_true",
        help="then rewrite the AOF and snapshot the RDB, so the forgotten data leaves the "
        "persistence files too (BGREWRITEAOF, BGSAVE; see docs/security.md)",
    )
    p.set_defaults(handler=cmd_forget)

    p = sub.add_parser(
        "extend-ttl",
        parents=[common],
        help="extend the TTL of an owner's active sessions (appends ttl.extended events)",
    )
    p.add_argument("owner", help="the owner whose sessions to extend")
    p.add_argument("seconds", type=int, help="the keys live this long from now")
    p.add_argument("--session", default=None, help="only this session (default: all)")
    p.set_defaults(handler=cmd_extend_ttl)

    p = sub.add_parser(
        "stats", parents=[common], help="entries, bytes and TTL per memory type of an owner"
    )
    p.add_argument("owner", help="the owner to measure")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--sample",
        type=int,
        default=64,
        help="keys per memory type measured with MEMORY USAGE (the rest is extrapolated)",
    )
    p.set_defaults(handler=cmd_stats)
