"""Change subscriptions and the notification-invalidated read cache.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncLiveReads) and the blocking
``Reader`` (LiveReads); methods annotate ``self`` with the runner protocols of :mod:`.base`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import redis.asyncio

from memstream.producers import keys
from memstream.producers.connection import next_message, open_pubsub
from memstream.producers.deployment import Deployment
from memstream.producers.errors import InvalidInputError

from .base import AsyncRunner, SyncRunner
from .cache import ReadCache
from .notify import Change, decode

SUBSCRIBE_TIMEOUT_S = 5.0


class _LiveRunner(AsyncRunner, Protocol):
    client: redis.asyncio.Redis
    read_cache: ReadCache | None

    async def deployment(self) -> Deployment: ...


class Subscription:
    """Change records of some owners, as an async iterator.

    ``async with reader.subscribe([...]) as sub`` returns once the server confirmed the
    subscription, so every change applied after that is seen; iterating without ``async
    with`` subscribes on the first ``__anext__``. Pub/sub is at-most-once: records sent
    while the connection is down are lost (the log stays the source of truth).
    """

    def __init__(self, reader: _LiveRunner, owners: Iterable[str]) -> None:
        self._reader = reader
        self.owners = frozenset(keys.check_id(o, "owners") for o in owners)
        if not self.owners:
            raise InvalidInputError("owners", "must name at least one owner", [])
        self._pubsub: Any = None
        self._early: collections.deque[Change] = collections.deque()

    async def start(self) -> None:
        if self._pubsub is not None:
            return
        n = (await self._reader.deployment()).partitions
        partitions = {keys.partition(owner, n) for owner in self.owners}
        channels = {keys.changes(p).encode() for p in partitions}
        self._pubsub = await open_pubsub(self._reader.client)
        await self._pubsub.ssubscribe(*channels)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            while channels:
                message = await next_message(self._pubsub, 1.0)
                if message is None:
                    continue
                if message["type"] == "ssubscribe":
                    channels.discard(message["channel"])
                else:
                    self._keep(message)

    def _keep(self, message: dict[str, Any]) -> Change | None:
        if message.get("type") != "smessage":
            return None
        change = decode(message.get("data") or b"")
        if change is None or change.owner not in self.owners:
            return None
        self._early.append(change)
        return change

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change:
        await self.start()
        while not self._early:
            message = await next_message(self._pubsub, 1.0)
            if message is not None:
                self._keep(message)
        return self._early.popleft()

    async def get(self, timeout: float) -> Change | None:
        """The next change, or None after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncLiveReads:
    def subscribe(self: _LiveRunner, owners: Iterable[str]) -> Subscription:
        """Change records (:class:`~.notify.Change`) of ``owners`` as they are applied."""
        return Subscription(self, owners)

    def cache_stats(self: _LiveRunner) -> dict[str, float]:
        """Hits, misses, invalidations, clears and the hit ratio of the read cache
        (all zero for a reader opened without ``cache=True``)."""
        cache = self.read_cache
        stats = cache.stats.as_dict() if cache is not None else ReadCache().stats.as_dict()
        stats["entries"] = len(cache) if cache is not None else 0
        return stats


class SyncSubscription:
    """Blocking view of a :class:`Subscription`, run on the reader's loop."""

    def __init__(self, reader: SyncRunner, inner: Subscription) -> None:
        self._reader, self._inner = reader, inner

    def __enter__(self) -> SyncSubscription:
        self._reader._call(self._inner.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Change]:
        while True:
            yield self._reader._call(self._inner.__anext__())

    def get(self, timeout: float) -> Change | None:
        return self._reader._call(self._inner.get(timeout))

    def close(self) -> None:
        self._reader._call(self._inner.aclose())


class LiveReads:
    def subscribe(self: SyncRunner, owners: Iterable[str]) -> SyncSubscription:
        return SyncSubscription(self, self._async.subscribe(owners))

    def cache_stats(self: SyncRunner) -> dict[str, float]:
        stats: dict[str, float] = self._async.cache_stats()
        return stats
