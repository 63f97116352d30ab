"""``AsyncReader`` and ``Reader``: what agents read, always from the active version.

Reads are :class:`Query` plans built by the projection modules; the async reader runs
them and the sync reader is a thin wrapper that runs the async one on a private loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import redis.asyncio

from memstream.producers import keys
from memstream.producers.connection import async_client
from memstream.producers.deployment import Deployment
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings

from .base import Query
from .history import read_history
from .reads_live import AsyncLiveReads, LiveReads
from .reads_memory import AsyncMemoryReads, MemoryReads
from .reads_world import AsyncWorldReads, WorldReads
from .sessions import read_session_chain, read_session_data, read_sessions
from .state import read_state
from .wait import WaitResult, WaitTimeoutError, dead_letter, progress
from .working import read_working

T = TypeVar("T")

VERSION_TTL_S = 0.5
"""How long a reader trusts its cached active version. Replay keeps the old version for
longer than this after the flip, so a reader never reads a deleted version."""


class AsyncReader(AsyncMemoryReads, AsyncWorldReads, AsyncLiveReads):
    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings | None = None,
        *,
        shared: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.settings = settings or Settings()
        self.shared = tuple(keys.check_id(ns, "shared") for ns in shared)
        self._deployment: Deployment | None = None
        self._checked = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, *, shared: Sequence[str] = ()) -> AsyncReader:
        """``shared``: namespaces (owners such as ``team.alpha``) that searches made for
        an agent also cover; working memory stays private."""
        return cls(async_client(settings), settings, shared=shared)

    @classmethod
    def from_url(cls, url: str, *, shared: Sequence[str] = (), **options: Any) -> AsyncReader:
        return cls.from_settings(Settings.from_url(url, **options), shared=shared)

    async def deployment(self) -> Deployment:
        now = time.monotonic()
        if self._deployment is None or now - self._checked > VERSION_TTL_S:
            raw: Any = await self.client.hgetall(keys.META)
            self._deployment = Deployment.from_meta(raw)
            self._checked = now
        return self._deployment

    async def _pk(self, owner: str) -> keys.Projection:
        d = await self.deployment()
        return keys.Projection(keys.partition(owner, d.partitions), d.version)

    async def run(self, query: Query[T]) -> T:
        """Pipeline a query's commands, parse, and follow up if it asks for more."""
        while True:
            pipe = self.client.pipeline(transaction=False)
            for command in query.commands:
                # redis-py parses XPENDING as a summary unless told the range form is used.
                options = {"parse_detail": True} if command[0] == "XPENDING" else {}
                pipe.execute_command(*command, **options)
            result = query.parse(await pipe.execute(raise_on_error=False))
            if not isinstance(result, Query):
                return result
            query = result

    async def history(self, owner: str, session: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The last ``last`` messages of a session, oldest first."""
        keys.check_id(session, "session")
        return await self.run(read_history(await self._pk(owner), owner, session, _n(last)))

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
        version; raise :class:`WaitTimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            version = (await self.deployment()).version
            if await self.run(progress(receipt, version)):
                return await self.run(dead_letter(receipt, version))
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"entry {receipt.feed_id} of {receipt.owner} not applied after {timeout}s"
                )
            await asyncio.sleep(delay)
            # A low cap: each check is two cheap reads, and a coarse schedule would add
            # its own wait to read-your-writes latency.
            delay = min(delay * 2, 0.002)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _n(last: int) -> int:
    if not 1 <= last <= 10_000:
        from memstream.producers.errors import InvalidInputError

        raise InvalidInputError("last", "must be between 1 and 10000", last)
    return last


class Reader(MemoryReads, WorldReads, LiveReads):
    """Blocking reader: a thin wrapper running :class:`AsyncReader` on a private loop."""

    def __init__(self, settings: Settings, *, shared: Sequence[str] = ()) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._async = self._call(self._make(settings, tuple(shared)))

    @staticmethod
    async def _make(settings: Settings, shared: tuple[str, ...]) -> AsyncReader:
        return AsyncReader.from_settings(settings, shared=shared)

    @classmethod
    def from_settings(cls, settings: Settings, *, shared: Sequence[str] = ()) -> Reader:
        return cls(settings, shared=shared)

    @classmethod
    def from_url(cls, url: str, *, shared: Sequence[str] = (), **options: Any) -> Reader:
        return cls(Settings.from_url(url, **options), shared=shared)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def history(self, owner: str, session: str, *, last: int = 20) -> list[dict[str, Any]]:
        return self._call(self._async.history(owner, session, last=last))

    def state(self, owner: str) -> dict[str, Any] | None:
        return self._call(self._async.state(owner))

    def sessions(self, owner: str) -> list[dict[str, Any]]:
        return self._call(self._async.sessions(owner))

    def session_data(self, owner: str, session: str) -> dict[str, Any]:
        return self._call(self._async.session_data(owner, session))

    def session_chain(self, owner: str, session: str) -> list[str]:
        return self._call(self._async.session_chain(owner, session))

    def working(self, owner: str, *, last: int = 20) -> list[dict[str, Any]]:
        return self._call(self._async.working(owner, last=last))

    def wait(self, receipt: Receipt, timeout: float = 5.0) -> WaitResult:
        return self._call(self._async.wait(receipt, timeout))

    def close(self) -> None:
        self._call(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
