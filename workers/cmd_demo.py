"""Subcommand ``demo``: the whole system on a private Redis, in one command."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import redis


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the workers and Redis are stopped, not orphaned.
    raise KeyboardInterrupt


def cmd_demo(args: argparse.Namespace, client: redis.Redis) -> int:
    """``client`` is used with ``--agents-only`` alone: otherwise the demo runs on its own
    embedded Redis, never on yours."""
    from rich.console import Console

    from .cli import settings_from
    from .demo import run_agents, run_demo

    console = Console()
    if args.agents_only:
        return run_agents(client, settings_from(args).redis_url, console)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run_demo(Path(args.data_dir), console, workers=args.workers)
    except KeyboardInterrupt:
        console.print("interrupted: the workers and Redis were stopped", highlight=False)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo", help="run three agents, two workers and a private Redis under .memstream/"
    )
    p.add_argument(
        "--data-dir",
        default=".memstream",
        help="where Redis data and logs live (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        choices=range(1, 9),
        metavar="N",
        help="worker processes to start, 1 to 8 (default: %(default)s)",
    )
    p.add_argument(
        "--agents-only",
        action="store_true",
        help="no private Redis and no workers: append one run of the three agents to the "
        "deployment at $MEMSTREAM_REDIS_URL (or --redis-url), wait for its workers and "
        "print what the agents read (the compose file's demo producer)",
    )
    # Only --agents-only writes into a Redis the demo did not start, and only when asked.
    p.add_argument(
        "--redis-url",
        default=None,
        help="with --agents-only: the deployment's Redis (default: $MEMSTREAM_REDIS_URL)",
    )
    p.set_defaults(handler=cmd_demo)
