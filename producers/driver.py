"""Where memstream meets redis-py: every driver exception becomes a :class:`MemstreamError`.

One table, used by the producers, the readers, the workers and the CLI, so that the same
failure reads the same everywhere. The address shown never carries credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from redis import exceptions as rx

from .errors import (
    AppendRejectedError,
    AuthenticationError,
    MemstreamError,
    NotInitialisedError,
    NotSupportedError,
    PermissionDeniedError,
    RedisTimeoutError,
    RedisUnavailableError,
    ServerBusyError,
)
from .settings import Settings

BUSY_PREFIXES = ("LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY")
"""Replies that mean "not now": the server is alive and the request may succeed later."""

CLUSTER_PREFIXES = ("MOVED", "ASK", "CROSSSLOT")

FUNCTION_MARKER = "memstream: "
"""How memstream's Lua functions start a refusal (``ERR memstream: <reason>``)."""


def address(settings: Settings | None) -> str:
    """``host:port`` (or the socket path) of the settings' URL, without user or password."""
    if settings is None:
        return "Redis"
    parts = urlsplit(settings.redis_url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        return parts.hostname or "?"
    return f"{parts.hostname or 'localhost'}:{port}"


def username(settings: Settings | None) -> str | None:
    """The ACL user the settings log in as: the field, else the URL's user part."""
    if settings is None:
        return None
    return settings.username or urlsplit(settings.redis_url).username or None


def is_transient(error: BaseException) -> bool:
    """True when retrying later can succeed: connection loss, timeouts, busy replies."""
    if isinstance(error, RedisUnavailableError | RedisTimeoutError | ServerBusyError):
        return True
    if isinstance(error, rx.AuthenticationError | rx.NoPermissionError):
        return False
    if isinstance(error, rx.ConnectionError | rx.TimeoutError | rx.BusyLoadingError):
        return True
    if isinstance(error, rx.ClusterDownError | rx.TryAgainError | rx.ReadOnlyError):
        return True
    if isinstance(error, rx.ResponseError):
        return str(error).startswith(BUSY_PREFIXES)
    return isinstance(error, ConnectionError | TimeoutError)


def translate_driver_error(error: rx.RedisError, settings: Settings | None) -> MemstreamError:
    """Map a redis-py exception to the memstream tree; the message names the address."""
    where = address(settings)
    user = username(settings)
    text = str(error)
    if isinstance(error, rx.AuthenticationError | rx.AuthenticationWrongNumberOfArgsError):
        return AuthenticationError(where, user)
    if isinstance(error, rx.NoPermissionError) or text.startswith("NOPERM"):
        who = f"user {user!r}" if user else "the default user"
        return PermissionDeniedError(f"Redis at {where} denied {who}: {text}")
    if isinstance(error, rx.TimeoutError):
        return RedisTimeoutError(f"Redis at {where} did not answer in time: {text}")
    if isinstance(error, rx.BusyLoadingError) or text.startswith(BUSY_PREFIXES):
        return ServerBusyError(f"Redis at {where} cannot serve now: {text}")
    if isinstance(error, rx.ConnectionError):
        return RedisUnavailableError(where, text)
    if text.startswith(CLUSTER_PREFIXES):
        return NotSupportedError(
            f"Redis at {where} is a Cluster node ({text.split(' ', 1)[0]}), but cluster mode is off"
        )
    if FUNCTION_MARKER in text:
        # Our own functions' refusals: ``ERR memstream: <reason>``, the reason kept whole.
        reason = text.split(FUNCTION_MARKER, 1)[1]
        if reason.startswith("deployment not initialised"):
            return NotInitialisedError(reason)
        return AppendRejectedError(reason)
    if "Function not found" in text or "function not found" in text.lower():
        return NotInitialisedError("memstream functions are not loaded: run `memstream init`")
    return MemstreamError(f"Redis at {where}: {text}")


@contextmanager
def driver_errors(settings: Settings | None) -> Iterator[None]:
    """Re-raise any redis-py exception inside the block as a :class:`MemstreamError`."""
    try:
        yield
    except rx.RedisError as e:
        raise translate_driver_error(e, settings) from e
