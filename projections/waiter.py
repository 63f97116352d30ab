"""Event-driven read-your-writes: ``wait`` wakes on the entry's change record.

The apply publishes a change record for every event it applied, inside the same atomic
call as the event's XACK (:mod:`.notify`). A waiter therefore subscribes to its
partition's channel, waits for the record naming its owner and log id, and confirms with
the usual look at the group state (:mod:`.wait`): the record is a wake-up, never the
proof. Between wake-ups it still looks now and then (:data:`WATCHED_POLL_CAP_S`), because
some entries publish nothing: a dead letter, an event no projection folds, an event past
its TTL; and a record is lost if the subscription breaks.

One :class:`ChangeWaiter` per reader holds one subscriber connection; a partition is
subscribed once (``SSUBSCRIBE``, sharded pub/sub: on a Cluster the channel lives on the
partition's shard) and stays subscribed, so a ``wait`` costs no extra round trip once its
partition is watched. Where no subscription is possible (an ACL user without the
channel, a broken connection) ``wait`` polls as it always did (:func:`.wait.next_delay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from redis.exceptions import RedisError, ResponseError

from memstream.producers import keys
from memstream.producers.connection import (
    is_cluster,
    next_message,
    open_pubsub,
    subscriber_client,
)
from memstream.producers.deadline import deadline_scope
from memstream.producers.driver import is_transient
from memstream.producers.errors import MemstreamError, RedisTimeoutError
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings

from .cache import _partition_of
from .notify import decode
from .wait import WaitResult, next_delay, timed_out

CUT_LOOK_S = 0.05
"""A look with less time than this left that times out was cut by the wait's deadline."""

log = logging.getLogger("memstream.wait")

SUBSCRIBE_BUDGET_S = 1.0
"""How long a first ``wait`` on a partition waits for its SSUBSCRIBE to be confirmed
before it polls instead (it tries the subscription again on its next look)."""
REFUSED_RETRY_S = 60.0
"""After the server refused a subscription (NOPERM), waits poll for this long before one
tries again: ACL rules change rarely, and each refusal costs a connection."""
WATCHED_POLL_S = 0.01
WATCHED_POLL_CAP_S = 0.1
"""Looks while subscribed start after 10 ms and double up to 100 ms: only entries that
publish no record (dead letters, no-op events) or a lost record wait for them. On a
loaded machine a wait takes tens of ms, and looks every few ms there were most of its
cost (docs/benchmarks.md, freshness under load)."""
CLUSTER_READ_S = 0.002
"""A Cluster's pub/sub reads its shards' connections one after the other, each for up to
the read timeout: a long timeout on one shard would hold up records of the others."""


class Checker(Protocol):
    """What :func:`wait_for` needs from a reader: one look at the receipt's entry."""

    async def _check(self, receipt: Receipt) -> tuple[Receipt, WaitResult | None]: ...


class Watch:
    """One waiter's interest in one entry's change record."""

    __slots__ = ("broken", "event", "key")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.event = asyncio.Event()
        self.broken = False
        """The subscription ended: no record will come; watch again or poll."""

    async def wait(self, timeout: float) -> None:
        """Return when the record came, the subscription broke, or after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.event.wait()


class ChangeWaiter:
    """A reader's subscriber for ``wait``: partitions subscribed on demand, records
    dispatched to the waits that watch their (owner, log id).

    ``settings``: where to connect (its own connection, without driver retries, so a
    broken subscription is noticed rather than silently resubscribed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: Any = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._confirmed: set[int] = set()
        self._confirming: dict[int, asyncio.Future[bool]] = {}
        self._watches: dict[tuple[str, str], set[Watch]] = {}
        self._refused_until = 0.0
        self.woken = 0
        """Watches woken by their record (for tests and benchmarks)."""
        self.arrivals: dict[tuple[str, str], float] | None = None
        """Set to a dict (``bench/freshness.py --trace``) to record when each watched
        record arrived, by (owner, log id), on the monotonic clock."""

    @property
    def refused(self) -> bool:
        """True while subscriptions are known to be refused (waits poll)."""
        return time.monotonic() < self._refused_until

    async def watch(self, receipt: Receipt, budget: float) -> Watch | None:
        """A :class:`Watch` for ``receipt``'s record, once its partition's subscription
        is confirmed (so every record published after this returns is seen); None when
        no subscription is possible within ``budget`` seconds."""
        if self.refused or not await self._subscribed(receipt.partition, budget):
            return None
        watch = Watch((receipt.owner, receipt.log_id))
        self._watches.setdefault(watch.key, set()).add(watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        """Stop dispatching to ``watch``."""
        found = self._watches.get(watch.key)
        if found is not None:
            found.discard(watch)
            if not found:
                del self._watches[watch.key]

    async def _subscribed(self, p: int, budget: float) -> bool:
        if p in self._confirmed:
            return True
        confirming = self._confirming.get(p)
        if confirming is None:
            confirming = asyncio.get_running_loop().create_future()
            self._confirming[p] = confirming
            try:
                await self._send_subscribe(p)
            except (RedisError, OSError) as e:
                log.debug("change subscription for wait failed: %s", e)
                self._confirming.pop(p, None)
                await self._close_pubsub()
                return False
        try:
            async with asyncio.timeout(budget):
                return await asyncio.shield(confirming)
        except TimeoutError:
            return False

    async def _send_subscribe(self, p: int) -> None:
        if self._pubsub is None:
            if self.client is None:
                self.client = subscriber_client(self.settings)
            self._pubsub = await open_pubsub(self.client)
        await self._pubsub.ssubscribe(keys.changes(p))
        if self._task is None or self._task.done():
            # Started after the first SSUBSCRIBE: a pub/sub has no connection to read
            # from before it sent one.
            self._task = asyncio.get_running_loop().create_task(self._listen(self._pubsub))

    async def _listen(self, pubsub: Any) -> None:
        cluster = is_cluster(self.client)
        try:
            while True:
                busy = self._watches or self._confirming
                timeout = (CLUSTER_READ_S if busy else 0.05) if cluster else 1.0
                message = await next_message(pubsub, timeout)
                if message is not None:
                    self._handle(message)
        except ResponseError as e:
            if "NOPERM" in str(e) or "permission" in str(e).lower():
                self._refused_until = time.monotonic() + REFUSED_RETRY_S
                log.info("change subscription refused (%s): wait polls instead", e)
            else:
                log.warning("change subscription for wait failed: %s", e)
        except (RedisError, OSError) as e:
            log.info("change subscription for wait lost (%s): waits look again", e)
        finally:
            if self._pubsub is pubsub:
                self._pubsub = None
                self._broken()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "smessage":
            change = decode(message.get("data") or b"")
            if change is None:
                return  # not a record: the slow looks still cover every wait
            key = (change.owner, change.log_id)
            for watch in self._watches.get(key, ()):
                watch.event.set()
                self.woken += 1
                if self.arrivals is not None:
                    self.arrivals[key] = time.monotonic()
            return
        p = _partition_of(message.get("channel"))
        if p is None:
            return
        if kind == "ssubscribe":
            self._confirmed.add(p)
            confirming = self._confirming.pop(p, None)
            if confirming is not None and not confirming.done():
                confirming.set_result(True)
        elif kind == "sunsubscribe":
            # A Cluster moved the slot: records may be lost until subscribed again.
            self._confirmed.discard(p)
            self._wake_all()

    def _broken(self) -> None:
        """The subscription ended: nothing is confirmed, every watch must look again."""
        self._confirmed.clear()
        for confirming in self._confirming.values():
            if not confirming.done():
                confirming.set_result(False)
        self._confirming.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        for found in self._watches.values():
            for watch in found:
                watch.broken = True
                watch.event.set()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._broken()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def aclose(self) -> None:
        """Stop listening and close the subscriber connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_pubsub()
        if self.client is not None:
            await self.client.aclose()
            self.client = None


def _cause(e: MemstreamError, budget: float, previous: Exception | None) -> Exception | None:
    """What a look's error ``e`` leaves as the wait's cause: raised again unless transient;
    a last look that had under ``CUT_LOOK_S`` of its ``budget`` and timed out was cut by
    the wait's own deadline and says nothing about Redis, so the ``previous`` cause stands."""
    if not is_transient(e):
        raise e
    if isinstance(e, RedisTimeoutError) and budget < CUT_LOOK_S:
        return previous
    return e


async def wait_for(
    reader: Checker, waiter: ChangeWaiter | None, receipt: Receipt, timeout: float
) -> WaitResult:
    """``AsyncReader.wait``: look at ``receipt``'s entry until it is done or ``timeout``
    passed; between looks, wait for its change record through ``waiter`` when one can be
    watched, else poll (``waiter`` None: always poll)."""
    deadline = time.monotonic() + timeout
    delay, failing = 0.0005, None
    watch: Watch | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if watch is None and waiter is not None and not receipt.pending and not failing:
                watch = await waiter.watch(receipt, min(max(left, 0.001), SUBSCRIBE_BUDGET_S))
                delay = WATCHED_POLL_S if watch is not None else delay
            if watch is not None:
                watch.event.clear()  # before the look: a record during it still wakes us
            budget = max(deadline - time.monotonic(), 0.001)
            try:
                with deadline_scope(budget):
                    receipt, result = await reader._check(receipt)
                if result is not None:
                    return result
                failing = None
            except MemstreamError as e:
                failing = _cause(e, budget, failing)
            now = time.monotonic()
            if now >= deadline:
                raise timed_out(receipt, timeout, failing) from failing
            if watch is not None:
                await watch.wait(min(delay, deadline - now))
                delay = min(delay * 2, WATCHED_POLL_CAP_S)
                if watch.broken and waiter is not None:
                    waiter.unwatch(watch)
                    watch = None
            else:
                await asyncio.sleep(min(delay, deadline - now))
                delay = next_delay(delay, receipt, failing)
    finally:
        if watch is not None and waiter is not None:
            waiter.unwatch(watch)
