"""Change subscriptions and the notification-invalidated read cache.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncLiveReads) and the
blocking ``Reader`` (LiveReads). The blocking subscription reads its own blocking pub/sub
connection in the caller's thread; no event loop is involved.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import redis
import redis.asyncio

from memstream.producers import keys
from memstream.producers.connection import next_message, open_pubsub
from memstream.producers.deployment import Deployment
from memstream.producers.errors import InvalidInputError

from .base import AsyncRunner, doc_from
from .cache import ReadCache
from .cache_blocking import next_message as next_blocking
from .notify import Change, decode

SUBSCRIBE_TIMEOUT_S = 5.0


class _LiveRunner(AsyncRunner, Protocol):
    client: redis.asyncio.Redis
    read_cache: ReadCache | None

    async def deployment(self) -> Deployment: ...


class _SyncLiveRunner(Protocol):
    @property
    def client(self) -> redis.Redis: ...

    @property
    def read_cache(self) -> ReadCache | None: ...

    def deployment(self) -> Deployment: ...


def _channels(owners: frozenset[str], partitions: int) -> set[bytes]:
    return {keys.changes(keys.partition(owner, partitions)).encode() for owner in owners}


def _check_owners(owners: Iterable[str]) -> frozenset[str]:
    found = frozenset(keys.check_id(o, "owners") for o in owners)
    if not found:
        raise InvalidInputError("owners", "must name at least one owner", [])
    return found


def _change(owners: frozenset[str], message: dict[str, Any]) -> Change | None:
    """The change a pub/sub message carries, when it is about one of ``owners``."""
    if message.get("type") != "smessage":
        return None
    change = decode(message.get("data") or b"")
    if change is None or change.owner not in owners:
        return None
    return change


def _stats(cache: ReadCache | None) -> dict[str, float]:
    stats = cache.stats.as_dict() if cache is not None else ReadCache().stats.as_dict()
    stats["entries"] = len(cache) if cache is not None else 0
    return stats


class Subscription:
    """Change records of some owners, as an async iterator.

    ``async with reader.subscribe([...]) as sub`` returns once the server confirmed the
    subscription, so every change applied after that is seen; iterating without ``async
    with`` subscribes on the first ``__anext__``. Pub/sub is at-most-once: records sent
    while the connection is down are lost (the log stays the source of truth).
    """

    def __init__(self, reader: _LiveRunner, owners: Iterable[str]) -> None:
        self._reader = reader
        self.owners = _check_owners(owners)
        self._pubsub: Any = None
        self._early: collections.deque[Change] = collections.deque()

    async def start(self) -> None:
        """Subscribe, and return once the server confirmed every channel."""
        if self._pubsub is not None:
            return
        channels = _channels(self.owners, (await self._reader.deployment()).partitions)
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
        change = _change(self.owners, message)
        if change is not None:
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
        """Unsubscribe and close the connection."""
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
        return _stats(self.read_cache)


class SyncSubscription:
    """The blocking :class:`Subscription`: change records of ``owners``, read from
    ``reader``'s Redis on a blocking pub/sub connection of its own, as an iterator.

    ``with reader.subscribe([...]) as sub`` returns once the server confirmed the
    subscription; iterating without ``with`` subscribes on the first ``next``. Pub/sub is
    at-most-once, as for the async subscription."""

    def __init__(self, reader: _SyncLiveRunner, owners: Iterable[str]) -> None:
        self._reader = reader
        self.owners = _check_owners(owners)
        self._pubsub: Any = None
        self._early: collections.deque[Change] = collections.deque()

    def start(self) -> None:
        """Subscribe, and return once the server confirmed every channel."""
        if self._pubsub is not None:
            return
        channels = _channels(self.owners, self._reader.deployment().partitions)
        self._pubsub = self._reader.client.pubsub()  # type: ignore[no-untyped-call]
        self._pubsub.ssubscribe(*channels)
        end = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        while channels:
            if time.monotonic() > end:
                raise TimeoutError("the server did not confirm the subscription")
            message = next_blocking(self._pubsub, 1.0)
            if message is None:
                continue
            if message["type"] == "ssubscribe":
                channels.discard(message["channel"])
            else:
                self._keep(message)

    def _keep(self, message: dict[str, Any]) -> None:
        change = _change(self.owners, message)
        if change is not None:
            self._early.append(change)

    def __enter__(self) -> SyncSubscription:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Change]:
        while True:
            found = self.get(3600.0)
            if found is not None:
                yield found

    def get(self, timeout: float) -> Change | None:
        """The next change, or None after ``timeout`` seconds."""
        self.start()
        end = time.monotonic() + timeout
        while not self._early:
            left = end - time.monotonic()
            if left <= 0:
                return None
            message = next_blocking(self._pubsub, min(left, 1.0))
            if message is not None:
                self._keep(message)
        return self._early.popleft()

    def close(self) -> None:
        """Unsubscribe and close the connection."""
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None


class LiveReads:
    """The blocking twins of :class:`AsyncLiveReads`."""

    @doc_from(AsyncLiveReads.subscribe)
    def subscribe(self: _SyncLiveRunner, owners: Iterable[str]) -> SyncSubscription:
        return SyncSubscription(self, owners)

    @doc_from(AsyncLiveReads.cache_stats)
    def cache_stats(self: _SyncLiveRunner) -> dict[str, float]:
        return _stats(self.read_cache)
