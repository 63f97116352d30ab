"""Subcommands ``init``, ``tail`` and ``worker``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any

import redis

from memstream.producers import keys


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


class _JsonFormatter(logging.Formatter):
    """One JSON object per line (``--log-format json``), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(level: str, fmt: str) -> None:
    """Root logging for a long-running command: ``level`` (debug..error), ``fmt`` text|json."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def cmd_worker(args: argparse.Namespace, client: redis.Redis) -> int:
    import asyncio
    import os
    import socket

    from .cli import settings_from
    from .options import WorkerOptions
    from .worker import serve, tune_gc

    configure_logging(args.log_level, args.log_format)
    options = WorkerOptions(
        consumer=args.consumer or f"{socket.gethostname()}-{os.getpid()}",
        batch=args.batch,
        block_ms=args.block_ms,
        claim_idle_ms=args.claim_idle_ms,
        max_deliveries=args.max_deliveries,
        connections=args.connections,
        projections=tuple(args.projections),
        metrics_port=args.metrics_port,
    )
    tune_gc()
    asyncio.run(serve(settings_from(args), options))
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="load functions and write ms:meta")
    p.add_argument(
        "--partitions", type=int, default=None,
        help="partition count; kept as it is when not given (first init: "
        f"{keys.DEFAULT_PARTITIONS}); changing it is refused once data exists",
    )  # fmt: skip
    p.add_argument(
        "--max-event-bytes", type=int, default=None,
        help="largest encoded event accepted, 64..67108864; kept as it is when not given "
        "(first init: 1048576)",
    )  # fmt: skip
    p.add_argument(
        "--require-signed", action=argparse.BooleanOptionalAction, default=None,
        help="workers and replay refuse log entries not written by ms_append "
        "(docs/security.md); kept as it is when not given",
    )  # fmt: skip
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("tail", parents=[common], help="print an owner's decoded log")
    p.add_argument("owner", help="the owner whose log to print")
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_tail)

    p = sub.add_parser("worker", parents=[common], help="fold events into projections")
    p.add_argument("--consumer", default=None, help="consumer name (default: host-pid)")
    p.add_argument("--batch", type=int, default=200, help="entries per batch (default: 200)")
    p.add_argument(
        "--block-ms", type=int, default=1000,
        help="longest blocking read, also the longest wait on SIGTERM (default: 1000)",
    )  # fmt: skip
    p.add_argument(
        "--claim-idle-ms", type=int, default=30_000,
        help="take over entries pending this long in another consumer (default: 30000)",
    )  # fmt: skip
    p.add_argument(
        "--max-deliveries", type=int, default=5,
        help="dead-letter an entry delivered more often than this (default: 5)",
    )  # fmt: skip
    p.add_argument(
        "--connections", type=int, default=16,
        help="Redis calls in flight at once, whatever the partition count (default: 16)",
    )  # fmt: skip
    add_projections_option(p)
    add_metrics_option(p)
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )  # fmt: skip
    p.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="text, or one JSON object per line (default: text)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_worker)


def add_projections_option(p: argparse.ArgumentParser) -> None:
    """``--projections pkg.mod:attr`` (repeatable): fold these besides the built-in ones."""
    p.add_argument(
        "--projections", action="append", default=[], metavar="MODULE:ATTR",
        help="also fold this projection (a Projection class, instance or list of them); "
        "repeatable; give the same ones to every worker and to replay (docs/extending.md)",
    )  # fmt: skip


def add_metrics_option(p: argparse.ArgumentParser) -> None:
    """``--metrics-port N``: serve Prometheus /metrics on port N."""
    p.add_argument(
        "--metrics-port", type=int, default=None, metavar="N",
        help="serve Prometheus metrics on http://0.0.0.0:N/metrics (default: none)",
    )  # fmt: skip
