"""The operator's command line: ``memstream <command>``.

Every command takes ``--redis-url`` and falls back to ``MEMSTREAM_REDIS_URL`` through
:class:`Settings`, the only code that reads the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence

import redis

from memstream.producers.connection import sync_client
from memstream.producers.errors import MemstreamError
from memstream.producers.settings import Settings

Handler = Callable[[argparse.Namespace, redis.Redis], int]


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(redis_url=args.redis_url)


def cmd_init(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.workers.deploy import init

    d = init(client, partitions=args.partitions, max_event_bytes=args.max_event_bytes)
    print(
        f"memstream initialised: partitions={d.partitions} version={d.version} "
        f"max_event_bytes={d.max_event_bytes} format={d.format}"
    )
    return 0


def cmd_tail(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.workers.tail import tail

    with contextlib.suppress(KeyboardInterrupt):
        tail(client, args.owner, sys.stdout, follow=args.follow, as_json=args.json)
    return 0


def cmd_worker(args: argparse.Namespace, client: redis.Redis) -> int:
    import asyncio
    import logging
    import os
    import socket

    from memstream.workers.options import WorkerOptions
    from memstream.workers.worker import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = WorkerOptions(
        consumer=args.consumer or f"{socket.gethostname()}-{os.getpid()}",
        batch=args.batch,
        block_ms=args.block_ms,
        claim_idle_ms=args.claim_idle_ms,
        max_deliveries=args.max_deliveries,
    )
    asyncio.run(serve(_settings(args), options))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memstream", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", default=None, help="Redis URL (default: $MEMSTREAM_REDIS_URL)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", parents=[common], help="load functions and write ms:meta")
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--max-event-bytes", type=int, default=None)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = sync_client(_settings(args))
    except MemstreamError as e:
        print(f"memstream: {e}", file=sys.stderr)
        return 2
    try:
        handler: Handler = args.handler
        return handler(args, client)
    except MemstreamError as e:
        print(f"memstream: {e}", file=sys.stderr)
        return 1
    except redis.ConnectionError as e:
        print(f"memstream: cannot reach Redis: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
