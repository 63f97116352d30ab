"""The operator's command line: ``memstream <command>``.

Every command takes ``--redis-url`` and falls back to ``MEMSTREAM_REDIS_URL`` through
:class:`Settings`, the only code that reads the environment. Each command lives in its
own module with an ``add_parser(sub, common)`` function; this one only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

import redis

from memstream.producers.connection import sync_client
from memstream.producers.errors import MemstreamError
from memstream.producers.settings import Settings

Handler = Callable[[argparse.Namespace, redis.Redis], int]

COMMAND_MODULES = (
    "memstream.workers.cmd_basic",
    "memstream.workers.cmd_ops",
    "memstream.workers.cmd_demo",
    "memstream.workers.cmd_replay",
    "memstream.workers.cmd_memory",
    "memstream.workers.cmd_tier",
)
"""Modules that register subcommands; importing them is cheap (work is imported lazily)."""


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(redis_url=args.redis_url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memstream", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", default=None, help="Redis URL (default: $MEMSTREAM_REDIS_URL)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = sync_client(settings_from(args))
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
