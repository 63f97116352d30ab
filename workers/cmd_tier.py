"""Subcommand ``tier``: archive old log entries to the cold tier (docs/tiering.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis

from .cmd_basic import add_metrics_option


def cmd_tier(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.tiering import Policy, Tierer, open_archive
    from memstream.tiering.loop import once, run_forever, stop_on_signals

    from .cli import settings_from
    from .deploy import read_deployment

    settings = settings_from(args)
    archive = open_archive(settings, args.archive_url)
    archive.check()  # a missing bucket or refused credentials fail here, by name
    policy = Policy.from_settings(settings, older_than=args.older_than, keep_last=args.keep_last)
    tierer = Tierer(client, archive, settings, policy)
    try:
        if args.once:
            d = read_deployment(client)
            summary = once(tierer, d.partitions, show=sys.stderr.isatty() or args.progress)
            print(summary.text())
            return 1 if summary.errors else 0
        on_pass = None
        if args.metrics_port is not None:
            from .metrics_http import TierMetrics, serve_tier_metrics

            tier_metrics = TierMetrics()
            serve_tier_metrics(args.metrics_port, tier_metrics, client)
            on_pass = tier_metrics.on_pass
        with stop_on_signals() as stop:
            run_forever(tierer, args.interval_s, stop, on_pass=on_pass)
        return 0
    finally:
        archive.close()


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tier", parents=[common], help="archive old log entries to the cold tier (S3 or a folder)"
    )
    p.add_argument("--once", action="store_true", help="one pass, then exit (tests, cron)")
    p.add_argument(
        "--older-than",
        default=None,
        help="archive entries older than this (7d, 12h, 0s); with --keep-last, these two "
        "options replace the settings' policy (default: MEMSTREAM_TIER_OLDER_THAN_S, 7 days)",
    )
    p.add_argument(
        "--keep-last", type=int, default=None, help="keep at least the newest N entries hot"
    )
    p.add_argument(
        "--archive-url", default=None, help="file:///path or s3://bucket/prefix "
        "(default: $MEMSTREAM_ARCHIVE_URL)"
    )  # fmt: skip
    p.add_argument("--interval-s", type=float, default=60.0, help="pause between passes")
    p.add_argument("--progress", action="store_true", help="show the bar without a terminal")
    add_metrics_option(p)
    p.set_defaults(handler=cmd_tier)
