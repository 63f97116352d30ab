"""The Reader's read cache: tier 1 in process, tier 2 is Redis; invalidated by notifications.

A cached entry is the raw replies of one :class:`Query` stage, keyed by its commands, and
is parsed again on every hit: parsing may depend on the clock (working memory hides
expired steps) and callers get fresh objects they may mutate. Only stages whose
``cacheable_keys`` all belong to one owner are cached, because invalidation is per owner.

Why an entry is never stale for longer than a notification takes to arrive:

- Writes: every applied event publishes a change record on its partition's channel from
  inside ``ms_apply`` (:mod:`.notify`); :class:`Invalidator` drops the owner's entries.
- The read/notify race: a read takes a ticket before it is sent and stores its replies
  only if no invalidation of that owner happened since, so replies read before a write
  whose notification was handled while they were in flight are never stored.
- Lost notifications: a partition is cached only while its SSUBSCRIBE is confirmed; a
  broken subscription clears the whole cache before it subscribes again.
- Expiry (no notification): each entry also expires at the earliest PEXPIRETIME of its
  keys, read in the same pipeline as the miss, and after ``max_age_s`` at the latest.
- Read-your-writes: ``Reader.wait(receipt)`` drops the receipt owner's entries once the
  entry is applied, so a read after ``wait`` never returns what preceded the write, even
  if the notification is still on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from memstream.producers import keys
from memstream.producers.connection import next_message, open_pubsub, subscriber_client
from memstream.producers.settings import Settings

from .base import Query
from .notify import decode

log = logging.getLogger("memstream.cache")

MAX_ENTRIES = 10_000
MAX_AGE_S = 60.0
"""A safety net only: invalidation is by notification and by the keys' own expiry."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    """Cacheable reads that went to Redis (including those made while not subscribed)."""
    invalidations: int = 0
    """Owner invalidations applied (notifications, ``wait``)."""
    clears: int = 0
    """Whole-cache drops: subscription lost, version flipped."""

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "hits": self.hits, "misses": self.misses, "invalidations": self.invalidations,
            "clears": self.clears, "hit_ratio": self.hit_ratio,
        }  # fmt: skip


@dataclass(slots=True)
class _Entry:
    replies: list[Any]
    owner: str
    expires_ms: float


@dataclass(frozen=True, slots=True)
class Plan:
    """How one query stage is cached: its cache key, owner and partition."""

    key: Hashable
    owner: str
    p: int


@dataclass
class ReadCache:
    """Tier 1: raw replies per query stage, LRU-bounded, dropped per owner."""

    max_entries: int = MAX_ENTRIES
    max_age_s: float = MAX_AGE_S
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)
    _by_owner: dict[str, set[Hashable]] = field(default_factory=dict)
    _clock: int = 0
    _dropped_at: dict[str, int] = field(default_factory=dict)
    _cleared_at: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """The blocking reader's listener thread invalidates while the caller's thread reads."""

    @staticmethod
    def plan(query: Query[Any]) -> Plan | None:
        """The stage's cache plan, or None when it is not cacheable by owner."""
        owner, p = None, -1
        for key in query.cacheable_keys:
            where = keys.version_of_key(key)
            found = keys.key_owner(key, *where) if where else None
            if found is None or (owner is not None and found != owner):
                return None
            owner, p = found, where[0] if where else -1
        if owner is None:
            return None
        commands = tuple(query.commands)
        try:
            hash(commands)
        except TypeError:  # a command with a list argument: not a dict key, not cached
            return None
        return Plan(commands, owner, p)

    def get(self, plan: Plan, now_ms: float) -> list[Any] | None:
        with self._lock:
            return self._get(plan, now_ms)

    def _get(self, plan: Plan, now_ms: float) -> list[Any] | None:
        entry = self._entries.get(plan.key)
        if entry is not None and entry.expires_ms > now_ms:
            self._entries.move_to_end(plan.key)
            self.stats.hits += 1
            return entry.replies
        if entry is not None:
            self._forget(plan.key)
        self.stats.misses += 1
        return None

    def ticket(self) -> int:
        """Taken before a read is sent; :meth:`put` refuses it if the owner changed since."""
        return self._clock

    def put(self, plan: Plan, replies: list[Any], expires_ms: float, ticket: int) -> None:
        with self._lock:
            self._put(plan, replies, expires_ms, ticket)

    def _put(self, plan: Plan, replies: list[Any], expires_ms: float, ticket: int) -> None:
        if self._dropped_at.get(plan.owner, -1) > ticket or self._cleared_at > ticket:
            return  # a change may have landed after these replies were read
        if any(isinstance(r, Exception) for r in replies):
            return
        self._forget(plan.key)
        self._entries[plan.key] = _Entry(replies, plan.owner, expires_ms)
        self._by_owner.setdefault(plan.owner, set()).add(plan.key)
        while len(self._entries) > self.max_entries:
            self._forget(next(iter(self._entries)))

    def invalidate(self, owner: str) -> None:
        with self._lock:
            self._clock += 1
            self._dropped_at[owner] = self._clock
            self.stats.invalidations += 1
            for key in self._by_owner.pop(owner, set()):
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._clock += 1
            self._cleared_at = self._clock
            # Every owner's ticket is now older than the clear: the per-owner marks can go.
            self._dropped_at.clear()
            self._entries.clear()
            self._by_owner.clear()
            self.stats.clears += 1

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            owned = self._by_owner.get(entry.owner)
            if owned is not None:
                owned.discard(key)


def expiry_commands(plan_keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """Sent with a cacheable miss: the keys' expire times bound the entry's life."""
    return [("PEXPIRETIME", key) for key in plan_keys]


def entry_deadline(cache: ReadCache, expire_times: Sequence[Any], now_ms: float) -> float:
    deadline = now_ms + cache.max_age_s * 1000
    for raw in expire_times:
        if isinstance(raw, int) and raw > 0:
            deadline = min(deadline, raw)
    return deadline


def now_ms() -> float:
    return time.time() * 1000


@dataclass(slots=True)
class Stage:
    """One query stage on its way through the cache: the ``hit``, or the ``commands`` to
    send (the query's, plus the expiry reads of a cacheable miss)."""

    hit: list[Any] | None
    commands: list[tuple[Any, ...]]
    plan: Plan | None = None
    ticket: int = 0
    n: int = 0


def begin(cache: ReadCache | None, ready: Callable[[int], bool], query: Query[Any]) -> Stage:
    """Look ``query`` up in ``cache``; ``ready(p)`` says whether partition ``p``'s
    notifications are received (only then may an entry be stored). Shared by both
    readers, so they cache by the same rules."""
    if cache is None:
        return Stage(None, list(query.commands))
    plan = cache.plan(query) if query.cacheable_keys else None
    if plan is not None:
        hit = cache.get(plan, now_ms())
        if hit is not None:
            return Stage(hit, [])
        if not ready(plan.p):
            plan = None  # not listening yet: a stored entry could go stale
    extra = expiry_commands(query.cacheable_keys) if plan is not None else []
    return Stage(None, [*query.commands, *extra], plan, cache.ticket(), len(query.commands))


def finish(cache: ReadCache | None, stage: Stage, replies: list[Any]) -> list[Any]:
    """The query's replies of ``stage``, stored in ``cache`` when it was a cacheable miss."""
    if cache is None or stage.plan is None:
        return replies
    replies, expiry = replies[: stage.n], replies[stage.n :]
    cache.put(stage.plan, replies, entry_deadline(cache, expiry, now_ms()), stage.ticket)
    return replies


class Invalidator:
    """Listens to the partitions' change channels and drops what they name.

    It uses its own connection with no automatic retry: redis-py would otherwise reconnect
    and resubscribe silently, and the messages sent meanwhile would be lost unnoticed.
    """

    RECONNECT_S = 0.2
    IDLE_S = 0.01

    def __init__(self, settings: Settings, cache: ReadCache) -> None:
        self.client = subscriber_client(settings)
        self.cache = cache
        self._wanted: set[int] = set()
        self._confirmed: set[int] = set()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._side: set[asyncio.Task[None]] = set()
        """Subscribe calls in flight (held so they are not garbage-collected)."""

    def ready(self, p: int) -> bool:
        """True when partition ``p``'s notifications are being received."""
        if p in self._confirmed:
            return True
        self._wanted.add(p)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._pubsub is not None:
            task = asyncio.get_running_loop().create_task(self._subscribe([p]))
            self._side.add(task)
            task.add_done_callback(self._side.discard)
        return False

    async def _subscribe(self, partitions: Sequence[int]) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await pubsub.ssubscribe(*(keys.changes(p) for p in partitions))

    async def _run(self) -> None:
        while True:
            try:
                self._pubsub = await open_pubsub(self.client)
            except (RedisError, OSError):
                await asyncio.sleep(self.RECONNECT_S)
                continue
            try:
                await self._subscribe(sorted(self._wanted))
                while True:
                    message = await next_message(self._pubsub, 1.0)
                    if message is None and not self._confirmed:
                        await asyncio.sleep(self.IDLE_S)  # a Cluster's, before a subscription
                    elif message is not None:
                        self._handle(message)
            except (RedisError, OSError) as e:
                log.warning("change subscription lost (%s); cache cleared", e)
            finally:
                # Whatever was missed while not listening may have changed anything.
                self._confirmed.clear()
                self.cache.clear()
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.aclose()
                self._pubsub = None
            await asyncio.sleep(self.RECONNECT_S)

    def _handle(self, message: dict[str, Any]) -> None:
        handle(self.cache, self._confirmed, message)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()


def handle(cache: ReadCache, confirmed: set[int], message: dict[str, Any]) -> None:
    """Apply one pub/sub ``message`` to ``cache``, and to the ``confirmed`` partitions
    (both invalidators, async and blocking, go through here)."""
    kind, channel = message.get("type"), message.get("channel")
    p = _partition_of(channel)
    if kind == "ssubscribe" and p is not None:
        confirmed.add(p)
    elif kind == "sunsubscribe" and p is not None:
        confirmed.discard(p)
    elif kind == "smessage":
        change = decode(message.get("data") or b"")
        if change is None:
            cache.clear()  # unreadable: assume the worst
        else:
            cache.invalidate(change.owner)


def _partition_of(channel: Any) -> int | None:
    text = channel.decode() if isinstance(channel, bytes) else str(channel)
    tag = text.partition("{")[2].partition("}")[0]
    if tag.isdigit() and keys.changes(int(tag)) == text:
        return int(tag)
    return None
