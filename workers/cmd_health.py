"""Subcommand ``health``: exit 0 when the deployment is healthy, a documented code else
(see :mod:`memstream.workers.health`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis


def cmd_health(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.producers.connection import sync_client

    from .cli import settings_from
    from .health import check

    # One quick try, never redis-py's retries: a monitor wants an answer in time.
    settings = settings_from(args)
    quick = settings.model_copy(
        update={"retries": 0, "socket_timeout": args.timeout, "connect_timeout": args.timeout}
    )
    own = sync_client(quick)
    try:
        health = check(own, max_lag=args.max_lag)
    finally:
        own.close()
    if args.json:
        print(json.dumps(health.as_dict(), indent=2))
    else:
        print(f"{'healthy' if health.code == 0 else 'UNHEALTHY'}: {health.reason}")
    return health.code


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    from .health import DEFAULT_MAX_LAG

    p = sub.add_parser(
        "health", parents=[common],
        help="exit 0 if Redis, functions, groups, workers and lag are fine (codes: 3 "
        "unreachable, 4 not initialised, 5 groups missing, 6 no worker, 7 lagging)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--max-lag", type=int, default=DEFAULT_MAX_LAG,
        help=f"most entries that may wait to be applied (default: {DEFAULT_MAX_LAG})",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for Redis (default: 2)"
    )
    p.set_defaults(handler=cmd_health)
