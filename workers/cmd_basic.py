"""Subcommands ``init``, ``tail`` and ``worker``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import redis


def cmd_init(args: argparse.Namespace, client: redis.Redis) -> int:
    from .deploy import init

    d = init(client, partitions=args.partitions, max_event_bytes=args.max_event_bytes,
             require_signed=args.require_signed)  # fmt: skip
    print(
        f"memstream initialised: partitions={d.partitions} version={d.version} "
        f"max_event_bytes={d.max_event_bytes} format={d.format}"
    )
    return 0


def cmd_tail(args: argparse.Namespace, client: redis.Redis) -> int:
    from .tail import tail

    with contextlib.suppress(KeyboardInterrupt):
        tail(client, args.owner, sys.stdout, follow=args.follow, as_json=args.json)
    return 0


def cmd_worker(args: argparse.Namespace, client: redis.Redis) -> int:
    import asyncio
    import logging
    import os
    import socket

    from .cli import settings_from
    from .options import WorkerOptions
    from .worker import serve, tune_gc

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = WorkerOptions(
        consumer=args.consumer or f"{socket.gethostname()}-{os.getpid()}",
        batch=args.batch,
        block_ms=args.block_ms,
        claim_idle_ms=args.claim_idle_ms,
        max_deliveries=args.max_deliveries,
    )
    tune_gc()
    asyncio.run(serve(settings_from(args), options))
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="load functions and write ms:meta")
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--max-event-bytes", type=int, default=None)
    p.add_argument(
        "--require-signed", action=argparse.BooleanOptionalAction, default=None,
        help="workers and replay refuse log entries not written by ms_append "
        "(docs/security.md); kept as it is when not given",
    )  # fmt: skip
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("tail", parents=[common], help="print an owner's decoded log")
    p.add_argument("owner")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_tail)

    p = sub.add_parser("worker", parents=[common], help="fold events into projections")
    p.add_argument("--consumer", default=None, help="consumer name (default: host-pid)")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--block-ms", type=int, default=1000)
    p.add_argument("--claim-idle-ms", type=int, default=30_000)
    p.add_argument("--max-deliveries", type=int, default=5)
    p.set_defaults(handler=cmd_worker)
