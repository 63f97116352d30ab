"""Bounded calls: retry transient driver errors with jittered backoff, within a deadline.

Every producer and reader call runs through :func:`call` (sync) or :func:`acall` (async).
The deadline counts everything: each try, each reconnect and handshake, each backoff
sleep. The sync client's sockets are clipped to what is left of it (see
:mod:`.connection`); the async call runs inside ``asyncio.timeout``. So a frozen Redis
costs a call its deadline and no more, and the caller gets a :class:`MemstreamError`
(:class:`RedisTimeoutError` when the last try timed out).

Retrying is safe for what runs here: an append carries its ``eid`` (a retried append
returns the first ids instead of writing twice) and reads have no effects.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from redis import exceptions as rx

from .errors import NotReplicatedError, RedisTimeoutError, RedisUnavailableError

if TYPE_CHECKING:
    from .settings import Settings

T = TypeVar("T")

_DEADLINE: ContextVar[float | None] = ContextVar("memstream_deadline", default=None)


def current_deadline() -> float | None:
    """``time.monotonic()`` at which the call in progress (in this thread or task) ends."""
    return _DEADLINE.get()


@contextmanager
def deadline_scope(seconds: float) -> Iterator[float]:
    """Set the deadline for the block; a deadline already in force that ends sooner wins."""
    end = time.monotonic() + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        end = min(end, outer)
    token = _DEADLINE.set(end)
    try:
        yield end
    finally:
        _DEADLINE.reset(token)


def backoff_s(settings: Settings, failures: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**failures)]."""
    return random.uniform(0, min(settings.backoff_cap, settings.backoff_base * 2**failures))


def _translate(error: Exception, settings: Settings) -> Exception:
    from .driver import address, is_torn_connection, translate_driver_error

    if is_torn_connection(error):
        return RedisUnavailableError(address(settings), f"connection torn down: {error}")
    if isinstance(error, rx.RedisError):
        return translate_driver_error(error, settings)
    if isinstance(error, TimeoutError):  # asyncio.timeout's, or a socket's
        return RedisTimeoutError(_timeout_text(settings))
    return error


def _timeout_text(settings: Settings) -> str:
    from .driver import address

    return f"Redis at {address(settings)} did not answer in time"


def _give_up(
    error: Exception, previous: Exception | None, settings: Settings, tries: int, seconds: float
) -> Exception:
    """The error to raise when the deadline or the retries ran out.

    A last try cut short by the deadline says less than the refusals before it: report
    "cannot reach" rather than "did not answer" when the server was refusing us, and
    "too few replicas" when the tries before stored the append but no replica had it."""
    if isinstance(error, NotReplicatedError):
        return error  # its message says what was short
    if isinstance(error, RedisTimeoutError) and isinstance(
        previous, RedisUnavailableError | NotReplicatedError
    ):
        return previous
    if isinstance(error, RedisTimeoutError):
        return RedisTimeoutError(
            f"{_timeout_text(settings)}: gave up after {tries} tries in {seconds:.1f}s"
        )
    return error


class _Tries:
    """The retry bookkeeping :func:`call` and :func:`acall` share: count a failure, then
    either say how long to sleep before the next try or raise what the caller sees."""

    def __init__(self, settings: Settings, end: float, started: float | None = None) -> None:
        self.settings, self.end = settings, end
        self.started = time.monotonic() if started is None else started
        self.failures = 0
        self.previous: Exception | None = None

    def left(self) -> float:
        return self.end - time.monotonic()

    def failed(self, cause: Exception) -> float:
        """Seconds to sleep before the next try; raises the translated error instead
        when it is not transient or the retries or the deadline are spent."""
        from .driver import is_migrating, is_torn_connection, is_transient

        if isinstance(cause, AttributeError | TypeError) and not is_torn_connection(cause):
            raise cause  # a bug, not Redis
        error = _translate(cause, self.settings)
        self.failures += 1
        left = self.left()
        retry = is_transient(error) or is_migrating(cause)  # a half-moved slot: see driver
        if not retry or self.failures > self.settings.retries or left <= 0:
            took = time.monotonic() - self.started
            raise _give_up(error, self.previous, self.settings, self.failures, took) from cause
        self.previous = error
        return min(backoff_s(self.settings, self.failures), left)


def call(fn: Callable[[], T], settings: Settings, seconds: float) -> T:
    """Run ``fn`` (which talks to Redis) and retry it on transient errors until it
    succeeds, ``settings.retries`` retries are spent, or ``seconds`` have passed.

    Raises the :class:`MemstreamError` of the last try; other exceptions pass unchanged.
    """
    # deadline_scope spelled out, and the retry bookkeeping made at the first failure:
    # the context manager and _Tries cost several microseconds on every append, almost all
    # of which succeed at the first try.
    started = time.monotonic()
    end = started + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        end = min(end, outer)
    token = _DEADLINE.set(end)
    try:
        tries: _Tries | None = None
        while True:
            try:
                return fn()
            except (rx.RedisError, TimeoutError, AttributeError, TypeError) as e:
                if tries is None:
                    tries = _Tries(settings, end, started)
                delay = tries.failed(e)
            time.sleep(delay)
    finally:
        _DEADLINE.reset(token)


async def acall(fn: Callable[[], Awaitable[T]], settings: Settings, seconds: float) -> T:
    """The asyncio twin of :func:`call`: the whole call runs under ``asyncio.timeout``."""
    # As in call(): the scope spelled out and _Tries made at the first failure, since
    # nearly every read succeeds at once. timeout_at(end) is asyncio.timeout(left).
    started = time.monotonic()
    end = started + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        end = min(end, outer)
    token = _DEADLINE.set(end)
    loop_end = asyncio.get_running_loop().time() + (end - started)
    try:
        tries: _Tries | None = None
        while True:
            try:
                async with asyncio.timeout_at(loop_end):
                    return await fn()
            except (rx.RedisError, TimeoutError, AttributeError, TypeError) as e:
                if tries is None:
                    tries = _Tries(settings, end, started)
                delay = tries.failed(e)
            await asyncio.sleep(delay)
    finally:
        _DEADLINE.reset(token)
