"""The blocking reader's own core: it runs the same :class:`Query` plans as
:class:`~memstream.projections.reader.AsyncReader`, on a blocking client, in the caller's
thread, as ``Producer`` runs the appends that ``AsyncProducer`` runs.

Every read of ``Reader`` runs here: no private event loop, no thread hop (about 0.2 ms
on reads that take a few tenths of a millisecond). A read cache is served by the same
rules as the async reader's (:func:`.cache.begin`), invalidated by a listener thread
(:mod:`.cache_blocking`); archived values are fetched in the caller's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import redis
from redis.exceptions import MaxConnectionsError, RedisError, ResponseError

from memstream.producers import keys
from memstream.producers.deadline import call
from memstream.producers.deployment import Deployment
from memstream.producers.driver import translate_driver_error
from memstream.producers.errors import InvalidInputError, MemstreamError
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings

from .base import Continue, Plan, Query, pk_of
from .bridge import Bridge
from .cache import ReadCache, begin, finish
from .cache_blocking import BlockingInvalidator
from .context import ContextSection, sections_with
from .direct import DIRECT_MANY, Direct
from .history import read_messages
from .reads_log import resolve_cold_blocking
from .results import Message, SessionInfo, Step
from .sessions import read_session_chain, read_session_data, read_sessions
from .state import read_state
from .wait import WaitResult
from .working import read_working

if TYPE_CHECKING:
    from .reader import AsyncReader

T = TypeVar("T")
P = ParamSpec("P")

VERSION_TTL_S = 0.5
"""How long a reader (sync or async) trusts its cached active version. Replay keeps the
old version for longer than this after the flip, so a reader never reads a deleted
version."""


class BlockingCore:
    """Deployment cache and query execution on a blocking client.

    ``client`` is the blocking connection; ``settings`` bound every call; ``cache`` is
    the reader's read cache (None: none)."""

    def __init__(
        self, client: redis.Redis, settings: Settings, cache: ReadCache | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.cache = cache
        self.invalidator = BlockingInvalidator(settings, cache) if cache is not None else None
        self.direct = Direct(client) if Direct.serves(client) else None
        """Where single commands go (None for a Cluster client: ``execute_command``)."""
        self._deployment: Deployment | None = None
        self._checked = 0.0

    def deployment(self) -> Deployment:
        """The active deployment (version and partitions), re-read at most every
        :data:`VERSION_TTL_S` seconds."""
        now = time.monotonic()
        if self._deployment is None or now - self._checked > VERSION_TTL_S:
            raw: Any = call(
                lambda: self.client.hgetall(keys.META), self.settings, self.settings.read_deadline_s
            )
            previous, self._deployment = self._deployment, Deployment.from_meta(raw)
            self._checked = now
            flipped = previous is not None and previous.version != self._deployment.version
            if self.cache is not None and flipped:
                self.cache.clear()  # replay flipped: old entries are unreachable
        return self._deployment

    def pk(self, owner: str) -> keys.Projection:
        """The active version's keys for ``owner``'s partition."""
        return pk_of(self.deployment(), owner)

    def run(self, query: Query[T]) -> T:
        """Pipeline ``query``'s commands, parse, and follow up while it asks for more;
        bounded by ``settings.read_deadline_s``, retries of transient errors included.
        Archived values are put in place of their pointers, after the deadline."""
        result = call(lambda: self._run(query), self.settings, self.settings.read_deadline_s)
        return resolve_cold_blocking(self.settings, result) if query.archived else result

    def _run(self, query: Query[T]) -> T:
        while True:
            replies = self._replies(query)
            self._raise_refusals(replies)
            step = query.parse(replies)
            while isinstance(step, Continue):
                step = step.next(resolve_cold_blocking(self.settings, step.value))
            if not isinstance(step, Query):
                return step
            query = step

    def _replies(self, query: Query[Any]) -> list[Any]:
        if self.cache is None and len(query.commands) == 1:
            return [self._one(query.commands[0])]  # most reads: no stage, no pipeline
        if self.cache is None and self.direct is not None and len(query.commands) <= DIRECT_MANY:
            commands = query.commands  # history(): the window and the life record
            return self.direct.execute_many(commands, [command_options(c) for c in commands])
        ready = self.invalidator.ready if self.invalidator is not None else _never
        stage = begin(self.cache, ready, query)
        if stage.hit is not None:
            return stage.hit
        if len(stage.commands) == 1:
            return finish(self.cache, stage, [self._one(stage.commands[0])])
        pipe = self.client.pipeline(transaction=False)
        for command in stage.commands:
            pipe.execute_command(*command, **command_options(command))  # type: ignore[no-untyped-call]
        try:
            replies: list[Any] = pipe.execute(raise_on_error=False)
        except MaxConnectionsError:
            if self.direct is not None:
                self.direct.give_back()  # the retry may have the connection it held back
            raise
        return finish(self.cache, stage, replies)

    def _one(self, command: tuple[Any, ...]) -> Any:
        """One command's reply, sent without a pipeline (a pipeline of one costs about
        as much again in redis-py), on :class:`.direct.Direct`'s kept connection; an
        error reply is returned, as the pipeline's ``raise_on_error=False`` returns it,
        for :meth:`_raise_refusals`."""
        try:
            if self.direct is not None:
                return self.direct.execute(*command, **command_options(command))
            return self.client.execute_command(*command, **command_options(command))  # type: ignore[no-untyped-call]
        except ResponseError as e:
            return e

    def _raise_refusals(self, replies: list[Any]) -> None:
        """Raise a reply that is an error about the connection, not about the data (the
        same rule as ``AsyncReader._raise_refusals``)."""
        for reply in replies:
            if isinstance(reply, RedisError):
                error = translate_driver_error(reply, self.settings)
                if type(error) is not MemstreamError:
                    raise error from reply

    def close(self) -> None:
        """Stop the cache's listener and release the blocking connection pool."""
        if self.invalidator is not None:
            self.invalidator.close()
        if self.direct is not None:
            self.direct.close()
        self.client.close()


def _never(p: int) -> bool:
    return False


_NO_OPTIONS: dict[str, Any] = {}
_DETAIL = {"parse_detail": True}


def command_options(command: tuple[Any, ...]) -> dict[str, Any]:
    """The redis-py options to send ``command`` with (both readers use them)."""
    # redis-py parses XPENDING as a summary unless told the range form is used.
    return _DETAIL if command[0] == "XPENDING" else _NO_OPTIONS


class BlockingReads:
    """The reads of history, state, sessions and working memory, and ``wait``, for the
    blocking ``Reader``; with :meth:`run`, :meth:`deployment` and ``_read``, what every
    blocking read mixin runs on (:class:`~.base.SyncRunner`)."""

    _core: BlockingCore
    settings: Settings
    shared: tuple[str, ...]
    projections: tuple[Any, ...]
    _history_page: Callable[[str, str, int, str | None], list[Message]]
    """History past the hot window: :class:`~.reads_log.LogReads`, mixed into Reader."""
    _bridge: Bridge | None

    @property
    def _async(self) -> AsyncReader:
        """An :class:`AsyncReader` on a private loop, made on first use. It runs
        ``wait`` (its change waiter), semantic search and ``search_messages``."""
        if self._bridge is None:
            self._bridge = Bridge(self.settings, self.shared)
        return self._bridge.reader

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        _ = self._async  # the loop exists once a coroutine of its reader is made
        assert self._bridge is not None
        return self._bridge.call(coro)

    @property
    def client(self) -> redis.Redis:
        """The blocking Redis client the reads run on."""
        return self._core.client

    @property
    def read_cache(self) -> ReadCache | None:
        """In-process read cache (see :mod:`.cache`); None when the reader has none."""
        return self._core.cache

    @property
    def context_sections(self) -> tuple[ContextSection, ...]:
        """The sections :meth:`context` fills: the built-in ones and those of the reader's
        extra ``projections``, by rank."""
        return sections_with(self.projections)

    def deployment(self) -> Deployment:
        """The active deployment (projection version and partitions), cached briefly."""
        return self._core.deployment()

    def run(self, query: Query[T]) -> T:
        """Run the plan ``query`` (the read of a projection of your own, say) with the
        read deadline, the retries and the read cache of every built-in read."""
        return self._core.run(query)

    def _pk(self, owner: str) -> keys.Projection:
        return self._core.pk(owner)

    def _read(self, plan: Plan[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._core.run(plan(self._core.deployment(), *args, **kwargs))

    def history(
        self, owner: str, session: str, *, last: int = 20, before: str | None = None
    ) -> list[Message]:
        """The last ``last`` messages (1 to 10,000) of ``owner``'s ``session``, before the
        log id ``before`` when given, oldest first. Past the ``history_cap`` newest kept in
        Redis the page continues into the log and the archive; pass
        ``page[0]["log_id"]`` as ``before`` for the next older page (an empty page means
        the start of history)."""
        keys.check_id(session, "session")
        if before is not None or last > self._core.settings.history_cap:
            return self._history_page(owner, session, check_last(last), check_before(before))
        return self.run(read_messages(self._pk(owner), owner, session, check_last(last)))

    def state(self, owner: str) -> dict[str, Any] | None:
        """``owner``'s state document, or None if never saved."""
        return self.run(read_state(self._pk(owner), owner))

    def sessions(self, owner: str) -> list[SessionInfo]:
        """``owner``'s sessions, most recently active first."""
        return SessionInfo.many(self.run(read_sessions(self._pk(owner), owner)))

    def session_data(self, owner: str, session: str) -> dict[str, Any]:
        """The data saved for ``owner``'s ``session`` (empty when none)."""
        keys.check_id(session, "session")
        return self.run(read_session_data(self._pk(owner), owner, session))

    def session_chain(self, owner: str, session: str) -> list[str]:
        """``owner``'s ``session`` and its predecessors, newest first."""
        keys.check_id(session, "session")
        return self.run(read_session_chain(self._pk(owner), owner, session))

    def working(self, owner: str, *, last: int = 20) -> list[Step]:
        """The newest ``last`` (1 to 10,000) live working-memory steps of ``owner``,
        oldest first."""
        ttl = self._core.settings.working_ttl_s
        return Step.many(self.run(read_working(self._pk(owner), owner, check_last(last), ttl)))

    def wait(self, receipt: Receipt, timeout: float = 5.0) -> WaitResult:
        """Return once ``receipt``'s entry is applied (or dead-lettered) in the active
        version; raise :class:`WaitTimeoutError` after ``timeout`` seconds.

        A pending receipt (the append went to the producer's outbox) is first resolved
        through its eid: this waits for the flush, then for the apply. Redis being out of
        reach meanwhile is waited out too, up to ``timeout``; an outboxed append that
        Redis refused raises :class:`~memstream.producers.errors.AppendRejectedError`."""
        # On the private loop (:mod:`.bridge`), which holds the reader's one subscriber
        # connection: the wait wakes on the entry's change record (:mod:`.waiter`).
        done: WaitResult = self._call(self._async.wait(receipt, timeout))
        if self._core.cache is not None:
            # Read-your-writes: this reader's own cache, not only the async reader's.
            self._core.cache.invalidate(receipt.owner)
        return done


def check_last(last: int) -> int:
    """``last`` of a history or working-memory read, checked (1 to 10,000)."""
    if not 1 <= last <= 10_000:
        raise InvalidInputError("last", "must be between 1 and 10000", last)
    return last


def check_before(before: str | None) -> str | None:
    """The ``before`` cursor of a history page, checked."""
    from .reads_log import check_cursor

    return check_cursor(before, "before")
