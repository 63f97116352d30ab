"""The outbox's flusher: a thread (sync producer) or a task (async producer) that sends
outboxed appends to Redis in the order they were stored, when Redis is back.

Each row is sent as the same ``FCALL ms_append`` with the same ``eid`` it was stored with,
pipelined :data:`BATCH` at a time. If the connection drops mid-batch the whole batch is
sent again: the rows Redis already stored answer with their first ids (the eid record),
so nothing is written twice and the owner's order is kept. A row Redis refuses (its data
over ``max_event_bytes``, say) is marked rejected with the reason and does not hold up
the rows behind it. The flusher never dies: every failure is logged (once per outage,
with the retry count and next delay) and retried with jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from .deadline import backoff_s
from .driver import is_transient, translate_driver_error
from .errors import AppendRejectedError, MemstreamError
from .outbox import Outbox, Row
from .settings import Settings

log = logging.getLogger("memstream.outbox")

BATCH = 200
"""Rows per flush round trip."""

IDLE_WAIT_S = 1.0
"""How long an idle flusher sleeps before looking again (a store wakes it at once)."""

MIN_DELAY_S = 0.05
"""Floor of the retry delay, so a refused connection is not retried in a tight loop."""

Settled = tuple[list[tuple[Row, str, str]], list[tuple[Row, str]], MemstreamError | None]


def sort_replies(rows: list[Row], replies: list[Any], settings: Settings) -> Settled:
    """Split a batch's replies into sent rows, refused rows and the error to retry on.

    Rows after a transient per-command error are left pending (they are sent again; the
    ones Redis did store dedup by eid)."""
    sent: list[tuple[Row, str, str]] = []
    refused: list[tuple[Row, str]] = []
    for row, reply in zip(rows, replies, strict=True):
        if isinstance(reply, Exception):
            error = (
                translate_driver_error(reply, settings)
                if isinstance(reply, RedisError)
                else reply
                if isinstance(reply, MemstreamError)
                else MemstreamError(str(reply))
            )
            if isinstance(error, AppendRejectedError):
                refused.append((row, error.reason))
                continue
            return sent, refused, error
        log_id, feed_id = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
        sent.append((row, log_id, feed_id))
    return sent, refused, None


class Outage:
    """One warning when flushing starts failing, one line when it recovers; and the
    outbox's :attr:`~.outbox.Outbox.outage` flag, so appends queue at once meanwhile."""

    def __init__(self, settings: Settings, outbox: Outbox) -> None:
        self.settings, self.outbox = settings, outbox
        self.failures = 0

    def failed(self, error: BaseException) -> float:
        """Count a failure and return how long to wait before the next try.

        Only a transient error marks an outage (queue every append at once): one that
        retrying cannot cure (a permission taken away, say) must reach the callers of
        ``append``, so their appends keep going to Redis and raise it."""
        transient = is_transient(error)
        if transient:
            self.outbox.outage = True
        self.failures += 1
        delay = max(MIN_DELAY_S, backoff_s(self.settings, min(self.failures, 16)))
        if self.failures == 1:
            log.warning("outbox flush paused: %s; retrying (try 1) in %.2fs", error, delay)
        elif not transient and self.failures & (self.failures - 1) == 0:  # 2, 4, 8, ...
            n = self.failures
            log.error("outbox flush failing (try %d, next in %.2fs): %s", n, delay, error)
        return delay

    def succeeded(self) -> None:
        self.outbox.outage = False
        if self.failures:
            log.warning("outbox flush resumed after %d failed tries", self.failures)
        self.failures = 0


def warn_stale(rows: list[Row], eid_ttl_s: int | None) -> None:
    """Rows older than the eid TTL may be written twice if their first try reached Redis."""
    if eid_ttl_s is None:
        return
    cutoff = time.time() - eid_ttl_s
    stale = sum(1 for row in rows if row.created < cutoff)
    if stale:
        log.error(
            "outbox: %d appends are older than the eid TTL (%ss): one whose first try had "
            "reached Redis before it failed will now be stored twice",
            stale,
            eid_ttl_s,
        )


class SyncFlusher:
    """The sync producer's flusher thread."""

    def __init__(
        self,
        outbox: Outbox,
        send: Callable[[list[Row]], list[Any]],
        settings: Settings,
        eid_ttl: Callable[[], int | None],
    ) -> None:
        self.outbox, self.send, self.settings, self.eid_ttl = outbox, send, settings, eid_ttl
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="memstream-outbox", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        outage = Outage(self.settings, self.outbox)
        while not self.stopping.is_set():
            try:
                delay = self._once(outage)
            except Exception as e:  # never die: log and retry
                delay = outage.failed(e)
            if delay:
                self.stopping.wait(delay)

    def _once(self, outage: Outage) -> float:
        self.outbox.wake.clear()
        rows = self.outbox.next_rows(BATCH)
        if not rows:
            self.outbox.wake.wait(IDLE_WAIT_S)
            return 0.0
        try:
            replies = self.send(rows)
        except MemstreamError as e:
            return outage.failed(e)
        warn_stale(rows, self.eid_ttl())
        sent, refused, error = sort_replies(rows, replies, self.settings)
        self.outbox.settle(sent, refused)
        if error is not None:
            return outage.failed(error)
        outage.succeeded()
        return 0.0

    def stop(self) -> None:
        self.stopping.set()
        self.outbox.wake.set()
        self.thread.join(timeout=self.settings.append_deadline_s + 1)


class AsyncFlusher:
    """The async producer's flusher task; SQLite work runs in threads off the loop."""

    def __init__(
        self,
        outbox: Outbox,
        send: Callable[[list[Row]], Awaitable[list[Any]]],
        settings: Settings,
        eid_ttl: Callable[[], int | None],
    ) -> None:
        self.outbox, self.send, self.settings, self.eid_ttl = outbox, send, settings, eid_ttl
        self.kick = asyncio.Event()
        if outbox.has_pending:
            self.kick.set()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="memstream-outbox")

    async def _run(self) -> None:
        outage = Outage(self.settings, self.outbox)
        while True:
            try:
                delay = await self._once(outage)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never die: log and retry
                delay = outage.failed(e)
            if delay:
                await asyncio.sleep(delay)

    async def _once(self, outage: Outage) -> float:
        self.kick.clear()
        rows = await asyncio.to_thread(self.outbox.next_rows, BATCH)
        if not rows:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_WAIT_S):
                    await self.kick.wait()
            return 0.0
        try:
            replies = await self.send(rows)
        except MemstreamError as e:
            return outage.failed(e)
        warn_stale(rows, self.eid_ttl())
        sent, refused, error = sort_replies(rows, replies, self.settings)
        await asyncio.to_thread(self.outbox.settle, sent, refused)
        if error is not None:
            return outage.failed(error)
        outage.succeeded()
        return 0.0

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
