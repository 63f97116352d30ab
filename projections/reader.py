"""``AsyncReader`` and ``Reader``: what agents read, always from the active version.

Reads are :class:`Query` plans built by the projection modules. The async reader runs
them; the sync reader runs the hot ones (history, state, sessions, working memory) on
its own blocking client (:mod:`.reader_sync`) and the others through the async one on a
private loop; ``wait`` too, since the loop holds its subscriber (:mod:`.waiter`).

Every call is bounded by ``Settings.read_deadline_s`` (retries of transient errors
included, see :mod:`memstream.producers.deadline`) and every driver error reaches the
caller as a :class:`~memstream.producers.errors.MemstreamError`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.exceptions import RedisError

from memstream.producers import keys
from memstream.producers.connection import async_client, sync_client
from memstream.producers.deadline import acall
from memstream.producers.deployment import Deployment
from memstream.producers.driver import translate_driver_error
from memstream.producers.errors import AppendRejectedError, InvalidInputError, MemstreamError
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings

from .base import Query
from .cache import Invalidator, ReadCache, entry_deadline, expiry_commands, now_ms
from .history import read_history
from .reader_sync import VERSION_TTL_S as _VERSION_TTL_S
from .reader_sync import BlockingCore, BlockingReads
from .reads_live import AsyncLiveReads, LiveReads
from .reads_log import AsyncLogReads, LogReads, resolve_cold
from .reads_memory import AsyncMemoryReads, MemoryReads
from .reads_tensors import AsyncTensorReads, TensorReads
from .reads_vectors import AsyncVectorReads, VectorReads
from .reads_world import AsyncWorldReads, WorldReads
from .sessions import read_session_chain, read_session_data, read_sessions
from .state import read_state
from .wait import WaitResult, outcome, resolve_pending
from .waiter import ChangeWaiter, wait_for
from .working import read_working

T = TypeVar("T")

VERSION_TTL_S = _VERSION_TTL_S
"""How long a reader trusts its cached active version (one value for both readers,
defined in :mod:`.reader_sync`; replay reads it from here)."""


class AsyncReader(
    AsyncMemoryReads, AsyncWorldReads, AsyncLiveReads, AsyncLogReads, AsyncTensorReads,
    AsyncVectorReads):  # fmt: skip
    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings | None = None,
        *,
        shared: Sequence[str] = (),
        cache: ReadCache | bool = False,
    ) -> None:
        self.client = client
        self.settings = settings or Settings()
        self.shared = tuple(keys.check_id(ns, "shared") for ns in shared)
        self._deployment: Deployment | None = None
        self._checked = 0.0
        self.read_cache = ReadCache() if cache is True else cache or None
        """In-process read cache (see :mod:`.cache`); None when the reader has none."""
        self._invalidator = (
            Invalidator(self.settings, self.read_cache) if self.read_cache is not None else None
        )
        self._waiter: ChangeWaiter | None = None
        """``wait``'s subscriber, made by the first ``wait``."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, shared: Sequence[str] = (), cache: ReadCache | bool = False
    ) -> AsyncReader:
        """``shared``: namespaces (owners such as ``team.alpha``) that searches made for
        an agent also cover; working memory stays private. ``cache``: serve repeated
        reads from memory, invalidated by change notifications (see :mod:`.cache`)."""
        return cls(async_client(settings), settings, shared=shared, cache=cache)

    @classmethod
    def from_url(
        cls, url: str, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        **options: Any,
    ) -> AsyncReader:  # fmt: skip
        return cls.from_settings(Settings.from_url(url, **options), shared=shared, cache=cache)

    async def deployment(self) -> Deployment:
        now = time.monotonic()
        if self._deployment is None or now - self._checked > VERSION_TTL_S:
            raw: Any = await acall(
                lambda: self.client.hgetall(keys.META),
                self.settings,
                self.settings.read_deadline_s,
            )
            previous, self._deployment = self._deployment, Deployment.from_meta(raw)
            self._checked = now
            flipped = previous is not None and previous.version != self._deployment.version
            if self.read_cache is not None and flipped:
                self.read_cache.clear()  # replay flipped: old entries are unreachable
        return self._deployment

    async def _pk(self, owner: str) -> keys.Projection:
        d = await self.deployment()
        return keys.Projection(keys.partition(owner, d.partitions), d.version)

    async def run(self, query: Query[T]) -> T:
        """Pipeline a query's commands, parse, and follow up if it asks for more.

        With a read cache, a stage whose ``cacheable_keys`` belong to one owner is served
        from memory when it can be (see :mod:`.cache` for why that is never stale)."""
        deadline = self.settings.read_deadline_s
        result = await acall(lambda: self._run(query), self.settings, deadline)
        # Outside the Redis deadline: fetching archived values is the archive's business.
        return await resolve_cold(self.settings, result)  # archived values, if any

    async def _run(self, query: Query[T]) -> T:
        while True:
            replies = await self._replies(query)
            self._raise_refusals(replies)
            result = query.parse(list(replies))
            if not isinstance(result, Query):
                return result
            query = result

    def _raise_refusals(self, replies: list[Any]) -> None:
        """Raise a reply that is an error about the connection, not about the data.

        Queries see plain error replies (``XINFO`` of a missing stream, say) and handle
        them; a denied permission, a busy or loading server or a Cluster redirect would
        only be misread as "nothing there"."""
        for reply in replies:
            if isinstance(reply, RedisError):
                error = translate_driver_error(reply, self.settings)
                if type(error) is not MemstreamError:
                    raise error from reply

    async def _replies(self, query: Query[Any]) -> list[Any]:
        cache, plan = self.read_cache, None
        if cache is not None and self._invalidator is not None and query.cacheable_keys:
            plan = cache.plan(query)
            if plan is not None:
                hit = cache.get(plan, now_ms())
                if hit is not None:
                    return hit
                if not self._invalidator.ready(plan.p):
                    plan = None  # not listening yet: a stored entry could go stale
        extra = expiry_commands(query.cacheable_keys) if plan is not None else []
        ticket = cache.ticket() if cache is not None else 0
        pipe = self.client.pipeline(transaction=False)
        for command in [*query.commands, *extra]:
            # redis-py parses XPENDING as a summary unless told the range form is used.
            options = {"parse_detail": True} if command[0] == "XPENDING" else {}
            pipe.execute_command(*command, **options)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if cache is not None and plan is not None:
            n = len(query.commands)
            replies, expiry = replies[:n], replies[n:]
            cache.put(plan, replies, entry_deadline(cache, expiry, now_ms()), ticket)
        return replies

    async def history(
        self, owner: str, session: str, *, last: int = 20, before: str | None = None
    ) -> list[dict[str, Any]]:
        """The last ``last`` messages of a session (before the log id ``before`` when
        given), oldest first. Past the ``history_cap`` newest kept in Redis the page
        continues into the log and the archive; pass ``page[0]["log_id"]`` as ``before``
        for the next older page (an empty page means the start of history)."""
        keys.check_id(session, "session")
        if before is None and last <= self.settings.history_cap:
            return await self.run(read_history(await self._pk(owner), owner, session, _n(last)))
        return await self._history_page(owner, session, _n(last), _cursor(before))

    async def state(self, owner: str) -> dict[str, Any] | None:
        """The owner's state document, or None if never saved."""
        return await self.run(read_state(await self._pk(owner), owner))

    async def sessions(self, owner: str) -> list[dict[str, Any]]:
        """The owner's sessions, most recently active first."""
        return await self.run(read_sessions(await self._pk(owner), owner))

    async def session_data(self, owner: str, session: str) -> dict[str, Any]:
        keys.check_id(session, "session")
        return await self.run(read_session_data(await self._pk(owner), owner, session))

    async def session_chain(self, owner: str, session: str) -> list[str]:
        """``session`` and its predecessors, newest first."""
        keys.check_id(session, "session")
        return await self.run(read_session_chain(await self._pk(owner), owner, session))

    async def working(self, owner: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The newest live working-memory steps, oldest first."""
        pk = await self._pk(owner)
        return await self.run(read_working(pk, owner, _n(last), self.settings.working_ttl_s))

    async def wait(self, receipt: Receipt, timeout: float = 5.0) -> WaitResult:
        """Return once the receipt's entry is applied (or dead-lettered) in the active
        version; raise :class:`WaitTimeoutError` after ``timeout`` seconds.

        A pending receipt (the append went to the producer's outbox) is first resolved
        through its eid: this waits for the flush, then for the apply. Redis being out of
        reach meanwhile is waited out too, up to ``timeout``; an outboxed append that
        Redis refused raises :class:`~memstream.producers.errors.AppendRejectedError`.

        It wakes on the entry's change record when the partition's channel can be
        subscribed (one shared subscriber connection per reader), else it polls
        (:mod:`.waiter`)."""
        if self._waiter is None:
            self._waiter = ChangeWaiter(self.settings)
        return await wait_for(self, self._waiter, receipt, timeout)

    async def _check(self, receipt: Receipt) -> tuple[Receipt, WaitResult | None]:
        """One look: the receipt (resolved if it was pending) and the result, if done."""
        if receipt.pending:
            receipt = await self._resolve(receipt) or receipt
            if receipt.pending:
                return receipt, None
        version = (await self.deployment()).version
        result = await self.run(outcome(receipt, version))
        if result is not None and self.read_cache is not None:
            # Read-your-writes: the entry's change record may still be on its way.
            self.read_cache.invalidate(receipt.owner)
        return receipt, result

    async def _resolve(self, receipt: Receipt) -> Receipt | None:
        """A pending receipt's ids, once its append is in Redis; None while it is not."""
        if receipt.eid is None:
            raise InvalidInputError("receipt", "a pending receipt must carry its eid")
        partitions = (await self.deployment()).partitions
        found = await self.run(resolve_pending(receipt, partitions))
        if found is None and receipt.outbox is not None:
            from memstream.producers.outbox import resolve

            row = await asyncio.to_thread(resolve, receipt.outbox, receipt.eid)
            if row is not None and row.state == "rejected":
                raise AppendRejectedError(row.reason or "refused")
        return found

    async def aclose(self) -> None:
        if self._waiter is not None:
            await self._waiter.aclose()
        if self._invalidator is not None:
            await self._invalidator.aclose()
        await self.client.aclose()

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _n(last: int) -> int:
    if not 1 <= last <= 10_000:
        raise InvalidInputError("last", "must be between 1 and 10000", last)
    return last


def _cursor(before: str | None) -> str | None:
    from .reads_log import check_cursor

    return check_cursor(before, "before")


class Reader(BlockingReads, MemoryReads, WorldReads, LiveReads, LogReads, TensorReads,
             VectorReads):  # fmt: skip
    """Blocking reader. The hot reads run on its own blocking client in the caller's
    thread (:class:`~.reader_sync.BlockingReads`); the others, and every read when a
    read cache is on, run :class:`AsyncReader` on a private loop.

    ``settings``: where and how to connect; ``shared``: namespaces that searches made
    for an agent also cover; ``cache``: an in-process read cache (see :mod:`.cache`)."""

    def __init__(
        self, settings: Settings, *, shared: Sequence[str] = (), cache: ReadCache | bool = False
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._settings = settings
        self._async = self._call(self._make(settings, tuple(shared), cache))
        self._core = BlockingCore(sync_client(settings), settings)
        self._cached = self._async.read_cache is not None

    @staticmethod
    async def _make(
        settings: Settings, shared: tuple[str, ...], cache: ReadCache | bool
    ) -> AsyncReader:
        return AsyncReader.from_settings(settings, shared=shared, cache=cache)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, shared: Sequence[str] = (), cache: ReadCache | bool = False
    ) -> Reader:
        """A reader for ``settings``; ``shared`` and ``cache`` as in :class:`Reader`."""
        return cls(settings, shared=shared, cache=cache)

    @classmethod
    def from_url(
        cls, url: str, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        **options: Any,
    ) -> Reader:  # fmt: skip
        """A reader for the Redis at ``url``, other settings from ``options``; ``shared``
        and ``cache`` as in :class:`Reader`."""
        return cls(Settings.from_url(url, **options), shared=shared, cache=cache)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        except RedisError as e:  # a driver error that no inner boundary turned into ours
            raise translate_driver_error(e, self._settings) from e

    def close(self) -> None:
        """Close both clients and stop the private loop."""
        self._core.close()
        self._call(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
