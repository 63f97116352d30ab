"""Where memstream meets redis-py: every driver exception becomes a :class:`MemstreamError`.

One table, used by the producers, the readers, the workers and the CLI, so that the same
failure reads the same everywhere. The address shown never carries credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from redis import exceptions as rx

from .errors import (
    AppendRejectedError,
    AuthenticationError,
    MemstreamError,
    NotInitialisedError,
    NotReplicatedError,
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

MIGRATING_MARK = "Script attempted to access a non local key"
"""What Redis answers when a function touches a key of its slot that a reshard has
already moved off this node (the slot is MIGRATING, the key is on the target now, or is
a new key, which the source no longer creates). For ``ms_append``/``ms_append_many``
with an eid (every memstream producer sends one) it comes before any write: see
:func:`is_migrating`."""

FUNCTION_MARKER = "memstream: "
"""How memstream's Lua functions start a refusal (``ERR memstream: <reason>``)."""


class NotReplicated(rx.TimeoutError):
    """``WAIT`` returned fewer replicas than asked for (see :mod:`.replicas`)."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int) -> None:
        self.acked, self.wanted, self.timeout_ms = acked, wanted, timeout_ms
        super().__init__(
            f"the append is on its primary, but {acked} of {wanted} replicas acknowledged "
            f"it within {timeout_ms} ms (WAIT)"
        )


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


def is_migrating(error: BaseException) -> bool:
    """The call met its slot half migrated: retry after a backoff, as for ``TRYAGAIN``.

    Safe for memstream's appends (docs/operations.md, "Resharding"): Redis refuses a
    function's command on a missing key of a MIGRATING slot, and ``ms_append`` reads each
    key before writing it except ``heads``; it reads the eid key (``GET``) before the first
    write, and a new eid's key is missing, so on the source an append with an eid is
    refused before it writes anything; ``ms_append_many`` looks up each event's eid before
    writing that event, so its first event is refused first. Reads have no effects. Only
    the deadline's retries (producers, readers) use this; a worker's batch that fails so
    is redelivered as before."""
    return isinstance(error, rx.ResponseError) and MIGRATING_MARK in str(error)


_TORN_FILES = (
    os.path.join("redis", "asyncio", "connection.py"),
    os.path.join("asyncio", "streams.py"),
    os.path.join("asyncio", "selector_events.py"),
)


def is_torn_connection(error: BaseException) -> bool:
    """An ``AttributeError``/``TypeError`` that redis-py's asyncio connection raised while
    writing to a connection another task had just disconnected: a lost connection.

    Cause (redis-py 8.1, ``redis/asyncio/cluster.py``): on every ``reinitialize_steps``-th
    ``MOVED`` (5 by default), on ``CLUSTERDOWN``/``SlotNotCovered``, and when a cluster
    pipeline meets a connection error, the asyncio ``RedisCluster`` calls ``aclose()`` as
    a soft reset; it disconnects every connection of every node, those other tasks are
    using included, so a task about to send finds ``_writer`` None (``'NoneType' object
    has no attribute 'writelines'``). Upstream: aclose() is meant as "release, reconnect
    on next use" (redis/redis-py#3846), and a write on a torn transport leaks a non-Redis
    error (redis/redis-py#4287, 8.1.0). The command was not sent, so a retry is safe."""
    if not isinstance(error, AttributeError | TypeError) or "NoneType" not in str(error):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_TORN_FILES)


def is_transient(error: BaseException) -> bool:
    """True when retrying later can succeed: connection loss, timeouts, busy replies."""
    if isinstance(error, RedisUnavailableError | RedisTimeoutError | ServerBusyError):
        return True
    if is_torn_connection(error):
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
    if isinstance(error, NotReplicated):
        return NotReplicatedError(f"Redis at {where}: {text}")
    if isinstance(error, rx.TimeoutError):
        return RedisTimeoutError(f"Redis at {where} did not answer in time: {text}")
    # redis-py raises ClusterDownError("The cluster is down") itself, without the
    # server's CLUSTERDOWN prefix, when no node it knows can serve the slot map yet.
    busy = rx.BusyLoadingError | rx.ClusterDownError | rx.TryAgainError
    if isinstance(error, busy) or text.startswith(BUSY_PREFIXES):
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
