"""The blocking reader's own core: it runs the same :class:`Query` plans as
:class:`~memstream.projections.reader.AsyncReader`, on a blocking client, in the caller's
thread.

Handing each call to a private event loop costs a thread hop (about 0.2 ms) on reads
that take a few tenths of a millisecond, so the hot reads run here directly. Reads with
an in-process read cache stay on the async path: the cache's invalidation listener lives
on that loop, and a cache is only coherent with the reader that listens for it.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis
from redis.exceptions import RedisError

from memstream.producers import keys
from memstream.producers.deadline import call
from memstream.producers.deployment import Deployment
from memstream.producers.driver import translate_driver_error
from memstream.producers.errors import InvalidInputError, MemstreamError
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings

from .base import Query
from .history import read_history
from .reads_log import _has_cold, resolve_cold
from .sessions import read_session_chain, read_session_data, read_sessions
from .state import read_state
from .wait import WaitResult
from .working import read_working

T = TypeVar("T")

VERSION_TTL_S = 0.5
"""How long a reader (sync or async) trusts its cached active version. Replay keeps the
old version for longer than this after the flip, so a reader never reads a deleted
version."""


class BlockingCore:
    """Deployment cache and query execution on a blocking client.

    ``client`` is the blocking connection; ``settings`` bound every call."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
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
            self._deployment = Deployment.from_meta(raw)
            self._checked = now
        return self._deployment

    def pk(self, owner: str) -> keys.Projection:
        """The active version's keys for ``owner``'s partition."""
        d = self.deployment()
        return keys.Projection(keys.partition(owner, d.partitions), d.version)

    def run(self, query: Query[T]) -> T:
        """Pipeline ``query``'s commands, parse, and follow up while it asks for more;
        bounded by ``settings.read_deadline_s``, retries of transient errors included.
        The result may still hold cold pointers: see :meth:`BlockingReads._resolved`."""
        return call(lambda: self._run(query), self.settings, self.settings.read_deadline_s)

    def _run(self, query: Query[T]) -> T:
        while True:
            pipe = self.client.pipeline(transaction=False)
            for command in query.commands:
                # redis-py parses XPENDING as a summary unless told the range form is used.
                options = {"parse_detail": True} if command[0] == "XPENDING" else {}
                pipe.execute_command(*command, **options)  # type: ignore[no-untyped-call]
            replies: list[Any] = pipe.execute(raise_on_error=False)
            self._raise_refusals(replies)
            result = query.parse(replies)
            if not isinstance(result, Query):
                return result
            query = result

    def _raise_refusals(self, replies: list[Any]) -> None:
        """Raise a reply that is an error about the connection, not about the data (the
        same rule as ``AsyncReader._raise_refusals``)."""
        for reply in replies:
            if isinstance(reply, RedisError):
                error = translate_driver_error(reply, self.settings)
                if type(error) is not MemstreamError:
                    raise error from reply

    def close(self) -> None:
        """Release the blocking connection pool."""
        self.client.close()


class BlockingReads:
    """The hot reads of the blocking ``Reader``, run by its :class:`BlockingCore`.

    With a read cache the reader delegates to its :class:`AsyncReader` instead (see the
    module docstring)."""

    _core: BlockingCore
    _cached: bool
    _async: Any  # the AsyncReader that Reader wraps, for reads not run here

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        raise NotImplementedError  # Reader runs the coroutine on its private loop

    def _resolved(self, result: T) -> T:
        """``result`` with archived values in place of their pointers. Only a result that
        holds a pointer pays the hop to the async archive reader."""
        if not _has_cold(result):
            return result
        return self._call(resolve_cold(self._core.settings, result))

    def _read(self, query: Query[T]) -> T:
        return self._resolved(self._core.run(query))

    def history(
        self, owner: str, session: str, *, last: int = 20, before: str | None = None
    ) -> list[dict[str, Any]]:
        """The last ``last`` messages (1 to 10,000) of ``owner``'s ``session``, before the
        log id ``before`` when given, oldest first. Past the ``history_cap`` newest kept in
        Redis the page continues into the log and the archive; pass
        ``page[0]["log_id"]`` as ``before`` for the next older page (an empty page means
        the start of history)."""
        keys.check_id(session, "session")
        if self._cached or before is not None or last > self._core.settings.history_cap:
            page: list[dict[str, Any]] = self._call(
                self._async.history(owner, session, last=last, before=before)
            )
            return page
        return self._read(read_history(self._core.pk(owner), owner, session, _n(last)))

    def state(self, owner: str) -> dict[str, Any] | None:
        """``owner``'s state document, or None if never saved."""
        if self._cached:
            found: dict[str, Any] | None = self._call(self._async.state(owner))
            return found
        return self._read(read_state(self._core.pk(owner), owner))

    def sessions(self, owner: str) -> list[dict[str, Any]]:
        """``owner``'s sessions, most recently active first."""
        if self._cached:
            found: list[dict[str, Any]] = self._call(self._async.sessions(owner))
            return found
        return self._read(read_sessions(self._core.pk(owner), owner))

    def session_data(self, owner: str, session: str) -> dict[str, Any]:
        """The data saved for ``owner``'s ``session`` (empty when none)."""
        keys.check_id(session, "session")
        if self._cached:
            found: dict[str, Any] = self._call(self._async.session_data(owner, session))
            return found
        return self._read(read_session_data(self._core.pk(owner), owner, session))

    def session_chain(self, owner: str, session: str) -> list[str]:
        """``owner``'s ``session`` and its predecessors, newest first."""
        keys.check_id(session, "session")
        if self._cached:
            found: list[str] = self._call(self._async.session_chain(owner, session))
            return found
        return self._read(read_session_chain(self._core.pk(owner), owner, session))

    def working(self, owner: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The newest ``last`` (1 to 10,000) live working-memory steps of ``owner``,
        oldest first."""
        if self._cached:
            found: list[dict[str, Any]] = self._call(self._async.working(owner, last=last))
            return found
        ttl = self._core.settings.working_ttl_s
        return self._read(read_working(self._core.pk(owner), owner, _n(last), ttl))

    def wait(self, receipt: Receipt, timeout: float = 5.0) -> WaitResult:
        """Return once ``receipt``'s entry is applied (or dead-lettered) in the active
        version; raise :class:`WaitTimeoutError` after ``timeout`` seconds.

        A pending receipt (the append went to the producer's outbox) is first resolved
        through its eid: this waits for the flush, then for the apply. Redis being out of
        reach meanwhile is waited out too, up to ``timeout``; an outboxed append that
        Redis refused raises :class:`~memstream.producers.errors.AppendRejectedError`."""
        # On the private loop, which holds the reader's one subscriber connection: the
        # wait wakes on the entry's change record (:mod:`.waiter`), and with a read
        # cache the async wait also drops the owner's entries for read-your-writes.
        done: WaitResult = self._call(self._async.wait(receipt, timeout))
        return done


def _n(last: int) -> int:
    if not 1 <= last <= 10_000:
        raise InvalidInputError("last", "must be between 1 and 10000", last)
    return last
