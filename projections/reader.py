"""``AsyncReader`` and ``Reader``: what agents read, always from the active version.

Reads are :class:`Query` plans built by the projection modules. The async reader runs
them on its asyncio client; the blocking reader runs the same plans on its own blocking
client (:mod:`.reader_sync`), so every read is one typed line on each. Results are typed
(:mod:`.results`) and still read as the dicts they were. ``wait`` wakes on the entry's
change record (:mod:`.waiter`); the blocking reader's ``wait``, semantic search and
message search run the async reader on a private loop (:mod:`.bridge`), started on
first use.

Every call is bounded by ``Settings.read_deadline_s`` (retries of transient errors
included, see :mod:`memstream.producers.deadline`) and every driver error reaches the
caller as a :class:`~memstream.producers.errors.MemstreamError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio
from redis.exceptions import MaxConnectionsError, RedisError, ResponseError

from memstream.producers import keys
from memstream.producers.connection import async_client, sync_client
from memstream.producers.deadline import acall
from memstream.producers.deployment import Deployment
from memstream.producers.driver import translate_driver_error
from memstream.producers.errors import AppendRejectedError, InvalidInputError, MemstreamError
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings

from .base import Continue, Plan, Projection, Query, pk_of
from .bridge import Bridge
from .cache import Invalidator, ReadCache, begin, finish
from .context import ContextSection, sections_with
from .direct import DIRECT_MANY, AsyncDirect
from .history import read_messages
from .reader_sync import VERSION_TTL_S as _VERSION_TTL_S
from .reader_sync import BlockingCore, BlockingReads, check_before, check_last, command_options
from .reads_live import AsyncLiveReads, LiveReads
from .reads_log import AsyncLogReads, LogReads, resolve_cold
from .reads_memory import AsyncMemoryReads, MemoryReads
from .reads_tensors import AsyncTensorReads, TensorReads
from .reads_vectors import AsyncVectorReads, VectorReads
from .reads_world import AsyncWorldReads, WorldReads
from .results import Message, SessionInfo, Step
from .sessions import read_session_chain, read_session_data, read_sessions
from .state import read_state
from .wait import WaitResult, outcome, resolve_pending
from .waiter import ChangeWaiter, wait_for
from .working import read_working

T = TypeVar("T")
P = ParamSpec("P")

VERSION_TTL_S = _VERSION_TTL_S
"""How long a reader trusts its cached active version (one value for both readers,
defined in :mod:`.reader_sync`; replay reads it from here)."""


class AsyncReader(
    AsyncMemoryReads, AsyncWorldReads, AsyncLiveReads, AsyncLogReads, AsyncTensorReads,
    AsyncVectorReads):  # fmt: skip
    """Asyncio reader: every read runs its plan on ``client``.

    ``settings``: how to read (deadlines, caps, TTLs); ``shared``: namespaces that
    searches made for an agent also cover; ``cache``: an in-process read cache (see
    :mod:`.cache`); ``projections``: projections of your own whose ``context`` sections
    :meth:`context` fills (docs/extending.md)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings | None = None,
        *,
        shared: Sequence[str] = (),
        cache: ReadCache | bool = False,
        projections: Sequence[Projection] = (),
    ) -> None:
        self.client = client
        self.settings = settings or Settings()
        self.shared = tuple(keys.check_id(ns, "shared") for ns in shared)
        self.projections = tuple(projections)
        self._deployment: Deployment | None = None
        self._checked = 0.0
        self.read_cache = ReadCache() if cache is True else cache or None
        """In-process read cache (see :mod:`.cache`); None when the reader has none."""
        self._invalidator = (
            Invalidator(self.settings, self.read_cache) if self.read_cache is not None else None
        )
        self._waiter: ChangeWaiter | None = None
        """``wait``'s subscriber, made by the first ``wait``."""
        self._direct = AsyncDirect(client) if AsyncDirect.serves(client) else None
        """Where single commands go (:mod:`.direct`; None: ``execute_command``)."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        projections: Sequence[Projection] = (),
    ) -> AsyncReader:  # fmt: skip
        """A reader for ``settings``. ``shared``: namespaces (owners such as
        ``team.alpha``) that searches made for an agent also cover; working memory stays
        private. ``cache``: serve repeated reads from memory, invalidated by change
        notifications (see :mod:`.cache`). ``projections``: as in :class:`AsyncReader`."""
        return cls(async_client(settings), settings, shared=shared, cache=cache,
                   projections=projections)  # fmt: skip

    @classmethod
    def from_url(
        cls, url: str, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        projections: Sequence[Projection] = (), **options: Any,
    ) -> AsyncReader:  # fmt: skip
        """A reader for the Redis at ``url``, other settings from ``options``; ``shared``,
        ``cache`` and ``projections`` as in :meth:`from_settings`."""
        settings = Settings.from_url(url, **options)
        return cls.from_settings(settings, shared=shared, cache=cache, projections=projections)

    @property
    def context_sections(self) -> tuple[ContextSection, ...]:
        """The sections :meth:`context` fills: the built-in ones and those of the reader's
        extra ``projections``, by rank."""
        return sections_with(self.projections)

    async def deployment(self) -> Deployment:
        """The active deployment (projection version and partitions), cached briefly."""
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
        return pk_of(await self.deployment(), owner)

    async def _read(self, plan: Plan[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(plan(await self.deployment(), *args, **kwargs))

    async def run(self, query: Query[T]) -> T:
        """Pipeline ``query``'s commands, parse, and follow up if it asks for more.

        With a read cache, a stage whose ``cacheable_keys`` belong to one owner is served
        from memory when it can be (see :mod:`.cache` for why that is never stale)."""
        deadline = self.settings.read_deadline_s
        result = await acall(lambda: self._run(query), self.settings, deadline)
        if not query.archived:
            return result
        # Outside the Redis deadline: fetching archived values is the archive's business.
        return await resolve_cold(self.settings, result)  # archived values, if any

    async def _run(self, query: Query[T]) -> T:
        while True:
            replies = await self._replies(query)
            self._raise_refusals(replies)
            step = query.parse(list(replies))
            while isinstance(step, Continue):
                step = step.next(await resolve_cold(self.settings, step.value))
            if not isinstance(step, Query):
                return step
            query = step

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
        if self.read_cache is None and len(query.commands) == 1:
            return [await self._one(query.commands[0])]  # most reads: no stage, no pipeline
        if (
            self.read_cache is None
            and self._direct is not None
            and len(query.commands) <= DIRECT_MANY
        ):
            commands = query.commands  # history(): the window and the life record
            return await self._direct.execute_many(commands, [command_options(c) for c in commands])
        ready = self._invalidator.ready if self._invalidator is not None else _never
        stage = begin(self.read_cache, ready, query)
        if stage.hit is not None:
            return stage.hit
        if len(stage.commands) == 1:
            return finish(self.read_cache, stage, [await self._one(stage.commands[0])])
        pipe = self.client.pipeline(transaction=False)
        for command in stage.commands:
            pipe.execute_command(*command, **command_options(command))
        try:
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        except MaxConnectionsError:
            if self._direct is not None:
                await self._direct.give_back()  # the retry may have the one it held back
            raise
        return finish(self.read_cache, stage, replies)

    async def _one(self, command: tuple[Any, ...]) -> Any:
        """One command's reply, sent without a pipeline, on :mod:`.direct`'s kept
        connection; an error reply is returned, as the pipeline's ``raise_on_error=False``
        returns it, for :meth:`_raise_refusals`."""
        try:
            if self._direct is not None:
                return await self._direct.execute(*command, **command_options(command))
            reply = self.client.execute_command(*command, **command_options(command))  # type: ignore[no-untyped-call]
            return await reply
        except ResponseError as e:
            return e

    async def history(
        self, owner: str, session: str, *, last: int = 20, before: str | None = None
    ) -> list[Message]:
        """The last ``last`` messages (1 to 10,000) of ``owner``'s ``session``, before the
        log id ``before`` when given, oldest first. Past the ``history_cap`` newest kept in
        Redis the page continues into the log and the archive; pass
        ``page[0]["log_id"]`` as ``before`` for the next older page (an empty page means
        the start of history)."""
        keys.check_id(session, "session")
        if before is None and last <= self.settings.history_cap:
            pk = await self._pk(owner)
            return await self.run(read_messages(pk, owner, session, check_last(last)))
        return await self._history_page(owner, session, check_last(last), check_before(before))

    async def state(self, owner: str) -> dict[str, Any] | None:
        """``owner``'s state document, or None if never saved."""
        return await self.run(read_state(await self._pk(owner), owner))

    async def sessions(self, owner: str) -> list[SessionInfo]:
        """``owner``'s sessions, most recently active first."""
        return SessionInfo.many(await self.run(read_sessions(await self._pk(owner), owner)))

    async def session_data(self, owner: str, session: str) -> dict[str, Any]:
        """The data saved for ``owner``'s ``session`` (empty when none)."""
        keys.check_id(session, "session")
        return await self.run(read_session_data(await self._pk(owner), owner, session))

    async def session_chain(self, owner: str, session: str) -> list[str]:
        """``owner``'s ``session`` and its predecessors, newest first."""
        keys.check_id(session, "session")
        return await self.run(read_session_chain(await self._pk(owner), owner, session))

    async def working(self, owner: str, *, last: int = 20) -> list[Step]:
        """The newest ``last`` (1 to 10,000) live working-memory steps of ``owner``,
        oldest first."""
        pk = await self._pk(owner)
        ttl = self.settings.working_ttl_s
        return Step.many(await self.run(read_working(pk, owner, check_last(last), ttl)))

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
        """Stop the change waiter and the cache's listener, and close the client."""
        if self._waiter is not None:
            await self._waiter.aclose()
        if self._invalidator is not None:
            await self._invalidator.aclose()
        if self._direct is not None:
            await self._direct.aclose()
        await self.client.aclose()

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _never(p: int) -> bool:
    return False


class Reader(BlockingReads, MemoryReads, WorldReads, LiveReads, LogReads, TensorReads,
             VectorReads):  # fmt: skip
    """Blocking reader: every read runs its plan on the reader's own blocking client, in
    the caller's thread (:mod:`.reader_sync`), with the results :class:`AsyncReader`
    returns.

    ``settings``: where and how to connect; ``shared``: namespaces that searches made
    for an agent also cover; ``cache``: an in-process read cache (see :mod:`.cache`),
    invalidated by a listener thread; ``projections``: projections of your own whose
    ``context`` sections :meth:`context` fills (docs/extending.md)."""

    def __init__(
        self, settings: Settings, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        projections: Sequence[Projection] = (),
    ) -> None:  # fmt: skip
        self.settings = settings
        self.shared = tuple(keys.check_id(ns, "shared") for ns in shared)
        self.projections = tuple(projections)
        read_cache = ReadCache() if cache is True else cache or None
        self._core = BlockingCore(sync_client(settings), settings, read_cache)
        self._bridge: Bridge | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        projections: Sequence[Projection] = (),
    ) -> Reader:  # fmt: skip
        """A reader for ``settings``; ``shared``, ``cache`` and ``projections`` as in
        :class:`Reader`."""
        return cls(settings, shared=shared, cache=cache, projections=projections)

    @classmethod
    def from_url(
        cls, url: str, *, shared: Sequence[str] = (), cache: ReadCache | bool = False,
        projections: Sequence[Projection] = (), **options: Any,
    ) -> Reader:  # fmt: skip
        """A reader for the Redis at ``url``, other settings from ``options``; ``shared``,
        ``cache`` and ``projections`` as in :class:`Reader`."""
        settings = Settings.from_url(url, **options)
        return cls(settings, shared=shared, cache=cache, projections=projections)

    def close(self) -> None:
        """Close the client (and stop the cache's listener thread)."""
        self._core.close()
        if self._bridge is not None:
            self._bridge.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
