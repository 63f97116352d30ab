"""Subcommands ``status`` and ``dlq list|retry|drop``: the operator's view and repairs."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from .dlq import DeadLetter

CHUNK = 500


def cmd_status(args: argparse.Namespace, client: redis.Redis) -> int:
    from rich.console import Console

    from .status import exit_code, gather, render

    status = gather(client)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        render(status, Console())
    return exit_code(status)


def cmd_dlq_list(args: argparse.Namespace, client: redis.Redis) -> int:
    from .dlq import list_entries

    letters, total = list_entries(client, partition=args.partition, limit=args.limit)
    if args.json:
        print(json.dumps({"total": total, "entries": [d.as_dict() for d in letters]}, indent=2))
        return 0
    if not letters:
        print("the DLQ is empty")
        return 0
    noun = "entry" if total == 1 else "entries"
    print(f"{total} {noun} in the DLQ; the oldest {len(letters)}:")
    for d in letters:
        who = f"{d.owner} {d.log_id}" if d.owner else "(no pointer)"
        print(f"{d.ref}  {d.group}  {who}  deliveries={d.deliveries}")
        print(f"    {d.reason}")
    return 0


def _chunks(letters: Iterable[DeadLetter]) -> Iterator[list[DeadLetter]]:
    it = iter(letters)
    while chunk := list(itertools.islice(it, CHUNK)):
        yield chunk


def _chosen(args: argparse.Namespace, client: redis.Redis) -> Iterable[DeadLetter]:
    from .dlq import DlqError, iter_entries, resolve

    if args.all and args.ids:
        raise DlqError("give entry ids or --all, not both")
    if args.all:
        return iter_entries(client, args.partition)
    if not args.ids:
        raise DlqError("give one or more entry ids (P:ID, or ID with --partition) or --all")
    return resolve(client, args.ids, args.partition)


def cmd_dlq_retry(args: argparse.Namespace, client: redis.Redis) -> int:
    from .deploy import read_deployment
    from .dlq import check_retry_safe, retry

    check_retry_safe(read_deployment(client))
    requeued = skipped = 0
    for chunk in _chunks(_chosen(args, client)):
        for outcome in retry(client, chunk):
            d = outcome.letter
            if outcome.requeued:
                requeued += 1
                print(f"re-queued {d.ref} ({d.owner} {d.log_id}) as feed entry {outcome.detail}")
            else:
                skipped += 1
                print(f"skipped {d.ref}: {outcome.detail}")
    print(f"{requeued} re-queued, {skipped} skipped")
    return 0 if skipped == 0 else 1


def cmd_dlq_drop(args: argparse.Namespace, client: redis.Redis) -> int:
    from .dlq import drop

    letters = _chosen(args, client)
    if args.all and not args.yes:
        if not sys.stdin.isatty():
            print("memstream: dropping the whole DLQ needs --yes", file=sys.stderr)
            return 1
        where = "" if args.partition is None else f" of partition {args.partition}"
        answer = input(f"drop every DLQ entry{where}? Their events stay in the logs. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing dropped")
            return 1
    dropped = sum(drop(client, chunk) for chunk in _chunks(letters))
    print(f"dropped {dropped} DLQ entr{'y' if dropped == 1 else 'ies'}")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "status", parents=[common],
        help="feeds, groups, lag, consumers, DLQ (exit codes: 0 fine, 1 error, "
        "6 no live worker, 8 DLQ not empty)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_status)

    dlq = sub.add_parser("dlq", help="list, retry or drop dead-lettered entries")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    part = argparse.ArgumentParser(add_help=False)
    part.add_argument("--partition", "-p", type=int, default=None, help="one partition only")

    p = actions.add_parser("list", parents=[common, part], help="show entries and reasons")
    p.add_argument("--limit", "-n", type=int, default=50, help="most entries to show (default: 50)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_dlq_list)

    for name, handler, text in (
        ("retry", cmd_dlq_retry, "re-queue entries so workers process them again"),
        ("drop", cmd_dlq_drop, "delete entries (their events stay in the logs)"),
    ):
        p = actions.add_parser(name, parents=[common, part], help=text)
        p.add_argument("ids", nargs="*", metavar="ID", help="P:ID, or ID with --partition")
        p.add_argument("--all", action="store_true", help="every entry (of --partition)")
        if name == "drop":
            p.add_argument("--yes", "-y", action="store_true", help="do not ask")
        p.set_defaults(handler=handler)
