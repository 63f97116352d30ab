"""The operator's command line: ``memstream <command>``.

Every command takes ``--redis-url`` and falls back to ``MEMSTREAM_REDIS_URL`` through
:class:`Settings`, the only code that reads the environment. Each command lives in its
own module with an ``add_parser(sub, common)`` function; this one only dispatches, and
turns every failure into one line and a hint (:mod:`.cli_errors`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import redis

from memstream.producers.connection import sync_client
from memstream.producers.errors import ConfigError
from memstream.producers.settings import Settings

from .cli_errors import report

Handler = Callable[[argparse.Namespace, redis.Redis], int]

COMMAND_MODULES = (
    "memstream.workers.cmd_basic",
    "memstream.workers.cmd_ops",
    "memstream.workers.cmd_demo",
    "memstream.workers.cmd_replay",
    "memstream.workers.cmd_memory",
    "memstream.workers.cmd_outbox",
    "memstream.workers.cmd_tier",
    "memstream.workers.cmd_tensors",
    "memstream.workers.cmd_health",
)
"""Modules that register subcommands; importing them is cheap (work is imported lazily)."""

DESCRIPTION = """\
Event-sourced memory for AI agents on Redis Streams.

Agents append memory events with the Python producer; `memstream worker` processes fold
them into the read models agents query. These commands run and inspect a deployment.
"""

EPILOG = """\
quick start:
  memstream demo                   everything on a private Redis under .memstream/
  memstream init                   load the functions into your Redis (idempotent)
  memstream worker                 fold events into read models (start several)
  memstream status                 lag, consumers and dead letters, as a table or --json

Settings come from --redis-url or MEMSTREAM_* variables (MEMSTREAM_REDIS_URL, ...).
Add --debug to any command to see a traceback instead of one line and a hint.
"""


def version() -> str:
    """The installed distribution's version, or the source tree's when not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("memstream")
    except PackageNotFoundError:  # pragma: no cover - only when run from a bare checkout
        return "0+unknown"


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(redis_url=args.redis_url)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and appends each option's default to its help,
    except defaults that say nothing (None, False, an empty list) and help texts that
    already name their default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        # A help text that already states its default (many do, by hand) is left alone.
        if text is None or "default" in text or action.default in (None, False, [], ()):
            return text
        if action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """Every subcommand's parser: the house help format unless a command picks another."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="memstream", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"memstream {version()}")
    parser.add_argument(
        "--debug", action="store_true", help="print tracebacks instead of one-line errors"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        default=None,
        help="Redis URL, e.g. redis://user:pass@host:6379/0 or rediss:// for TLS "
        "(default: $MEMSTREAM_REDIS_URL, else redis://localhost:6379/0)",
    )
    # SUPPRESS: given after the command it sets the flag; absent, it leaves the top-level one.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub, common)
    return parser


def _client(args: argparse.Namespace) -> redis.Redis:
    settings = settings_from(args)
    try:
        return sync_client(settings)
    except ValueError as e:
        # redis-py parses the URL here: a non-numeric port, an unknown query option.
        raise ConfigError(f"--redis-url / MEMSTREAM_REDIS_URL: {e}") from e


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = _client(args)
    except Exception as e:
        if args.debug:
            raise
        return report(e, args, starting=True)
    try:
        handler: Handler = args.handler
        return handler(args, client)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.debug:
            raise
        return report(e, args)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
