"""How the command line reports a failure: one line saying what went wrong, one hint
saying what to do, and an exit code; never a traceback unless ``--debug``.

Exit codes for errors (``status`` and ``health`` document their own codes for findings):
1 the command failed (Redis unreachable, refused, bad input, rejected); 2 it could not
start: a usage error, settings that do not parse, or a missing optional dependency;
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import redis

from memstream.producers.driver import translate_driver_error
from memstream.producers.errors import (
    AuthenticationError,
    ConfigError,
    InvalidInputError,
    MemstreamError,
    NotInitialisedError,
    NotSupportedError,
    PermissionDeniedError,
    RedisTimeoutError,
    RedisUnavailableError,
    ServerBusyError,
)
from memstream.producers.settings import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2

EXTRAS = {
    "rich": "workers",
    "numpy": "workers",
    "torch": "workers",
    "boto3": "workers",
    "botocore": "workers",
    "zstandard": "workers",
    "safetensors": "workers",
    "prometheus_client": "workers",
    "langchain_core": "langchain",
    "langgraph": "langgraph",
}
"""Optional imports and the extra that brings each: a plain ``pip install memstream`` is
the light producer, so a command that needs more names what to install."""

HINTS: tuple[tuple[type[MemstreamError], str], ...] = (
    (
        RedisUnavailableError,
        "is redis-server running there? Pass --redis-url or set MEMSTREAM_REDIS_URL",
    ),
    (
        AuthenticationError,
        "check the user and password in the URL, or MEMSTREAM_USERNAME / MEMSTREAM_PASSWORD",
    ),
    (
        PermissionDeniedError,
        "this command needs more ACL rights than this user has; see docs/security.md",
    ),
    (
        RedisTimeoutError,
        "Redis is frozen, overloaded or far away; MEMSTREAM_APPEND_DEADLINE_S and "
        "MEMSTREAM_READ_DEADLINE_S bound each call",
    ),
    (ServerBusyError, "Redis is loading its data or busy with a script; try again shortly"),
    (NotInitialisedError, "run `memstream init` against this Redis first"),
    (NotSupportedError, "see docs/operations.md for supported topologies and versions"),
    (ConfigError, "check the MEMSTREAM_* variables and the command's options (--help)"),
    (InvalidInputError, "see the command's --help for what each argument accepts"),
)


def _settings(args: argparse.Namespace) -> Settings | None:
    try:
        return Settings.from_env(redis_url=getattr(args, "redis_url", None))
    except MemstreamError:
        return None


def _missing_extra(error: ModuleNotFoundError) -> str | None:
    root = (error.name or "").split(".")[0]
    return EXTRAS.get(root)


def explain(error: BaseException, args: argparse.Namespace) -> tuple[int, str, str]:
    """``(exit code, what went wrong, what to do)`` for any exception a command raised."""
    command = getattr(args, "command", None) or "this command"
    if isinstance(error, ModuleNotFoundError) and (extra := _missing_extra(error)):
        return (
            EXIT_USAGE,
            f"`memstream {command}` needs {error.name}, which the plain install leaves out",
            f"pip install 'memstream[{extra}]'",
        )
    if isinstance(error, redis.RedisError):
        error = translate_driver_error(error, _settings(args))
    if isinstance(error, MemstreamError):
        hint = next((h for kind, h in HINTS if isinstance(error, kind)), "")
        return EXIT_FAILED, str(error), hint
    return (
        EXIT_FAILED,
        f"unexpected error: {type(error).__name__}: {error}",
        "rerun with --debug for the traceback, and please report it",
    )


def report(
    error: BaseException, args: argparse.Namespace, *, starting: bool = False,
    out: TextIO | None = None,
) -> int:  # fmt: skip
    """Print the one-line error and its hint to stderr; return the exit code.

    ``starting``: the error came before the command ran (settings, the client), which
    makes it a configuration error whatever its type.
    """
    stream = out if out is not None else sys.stderr
    code, line, hint = explain(error, args)
    if starting and code == EXIT_FAILED:
        code = EXIT_USAGE
    print(f"memstream: {line}", file=stream)
    if hint:
        print(f"hint: {hint}", file=stream)
    return code
