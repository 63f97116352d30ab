"""LangChain chat history on memstream: ``MemstreamChatMessageHistory``.

One instance is one owner's session. ``add_messages`` is one pipelined append
(``append_many``) of ``message.appended`` v2 events; ``messages`` reads the history
projection; ``clear`` appends ``history.cleared`` (a message older than the clear that
arrives late stays cleared). Requires ``pip install 'memstream[langchain]'``.

Read-your-writes: the receipts of this instance's appends are kept, and the next read
first waits (``Reader.wait``) until a worker has applied each of them, at most
``wait_timeout`` seconds in all (default 5 s; ``WaitTimeoutError`` after that, e.g. when
no worker runs). Another instance's writes are seen once a worker has applied them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from memstream.producers import keys
from memstream.producers.core import Append
from memstream.producers.errors import MemstreamError
from memstream.producers.events_messages import HistoryCleared
from memstream.producers.producer import AsyncProducer, Producer
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.wait import WaitResult

from .lc_messages import from_body, to_event

__all__ = ["MemstreamChatMessageHistory"]

WAIT_TIMEOUT_S = 5.0
PAGE = 1000
"""Messages per history read; older pages continue into the log (``Reader.history``)."""


class MemstreamChatMessageHistory(BaseChatMessageHistory):
    """A LangChain ``BaseChatMessageHistory`` over one memstream owner and session.

    ``owner`` and ``session``: ids (the owner-id rule). ``settings``: where Redis is;
    the sync and async clients are made from it on first use (or pass ``producer``,
    ``reader``, ``async_producer``, ``async_reader`` of your own: they are not closed
    here). ``wait_timeout``: seconds a read waits for this instance's own appends to be
    applied (read-your-writes). ``max_messages``: read only the newest N (all by default).
    """

    def __init__(
        self,
        owner: str,
        session: str,
        *,
        settings: Settings | None = None,
        producer: Producer | None = None,
        reader: Reader | None = None,
        async_producer: AsyncProducer | None = None,
        async_reader: AsyncReader | None = None,
        wait_timeout: float = WAIT_TIMEOUT_S,
        max_messages: int | None = None,
    ) -> None:
        self.owner = keys.check_id(owner, "owner")
        self.session = keys.check_id(session, "session")
        self.settings = settings or Settings()
        self.wait_timeout = wait_timeout
        self.max_messages = max_messages
        self._producer, self._reader = producer, reader
        self._aproducer, self._areader = async_producer, async_reader
        self._made: list[Any] = []
        self._unseen: list[Receipt] = []

    @classmethod
    def from_url(
        cls, url: str, owner: str, session: str, **options: Any
    ) -> MemstreamChatMessageHistory:
        """``url``: the Redis URL; ``options``: the other constructor arguments."""
        return cls(owner, session, settings=Settings.from_url(url), **options)

    # --- sync -----------------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The session's messages, oldest first, after this instance's appends."""
        reader = self._sync_reader()
        deadline = time.monotonic() + self.wait_timeout
        while self._unseen:
            _check(reader.wait(self._unseen[0], _left(deadline)), self._unseen[0])
            self._unseen.pop(0)
        pages: list[Sequence[Mapping[str, Any]]] = []
        before: str | None = None
        for want in _page_sizes(self.max_messages, self.settings.history_cap):
            page = reader.history(self.owner, self.session, last=want, before=before)
            pages.append(page)
            if len(page) < want:
                break
            before = page[0]["log_id"]
        return [from_body(body) for page in reversed(pages) for body in page]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` in order, in one pipelined round trip."""
        items = [Append(self.owner, to_event(m), self.session) for m in messages]
        if items:
            self._unseen += self._sync_producer().append_many(items)

    def clear(self) -> None:
        """Clear the session's history (an append: later reads wait for it too)."""
        receipt = self._sync_producer().append(self.owner, HistoryCleared(), session=self.session)
        self._unseen.append(receipt)

    def close(self) -> None:
        """Close the sync clients this instance made (``aclose`` closes the async ones)."""
        for client in [c for c in self._made if isinstance(c, (Producer, Reader))]:
            client.close()
            self._made.remove(client)
            if client is self._producer:
                self._producer = None
            if client is self._reader:
                self._reader = None

    # --- async ----------------------------------------------------------------------

    async def aget_messages(self) -> list[BaseMessage]:
        """Async :attr:`messages`."""
        reader = self._async_reader()
        deadline = time.monotonic() + self.wait_timeout
        while self._unseen:
            _check(await reader.wait(self._unseen[0], _left(deadline)), self._unseen[0])
            self._unseen.pop(0)
        pages: list[Sequence[Mapping[str, Any]]] = []
        before: str | None = None
        for want in _page_sizes(self.max_messages, self.settings.history_cap):
            page = await reader.history(self.owner, self.session, last=want, before=before)
            pages.append(page)
            if len(page) < want:
                break
            before = page[0]["log_id"]
        return [from_body(body) for page in reversed(pages) for body in page]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async :meth:`add_messages`: ``messages`` in order, one pipelined round trip."""
        items = [Append(self.owner, to_event(m), self.session) for m in messages]
        if items:
            self._unseen += await self._async_producer().append_many(items)

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        producer = self._async_producer()
        receipt = await producer.append(self.owner, HistoryCleared(), session=self.session)
        self._unseen.append(receipt)

    async def aclose(self) -> None:
        """Close the async clients this instance made (``close`` closes the sync ones)."""
        for client in [c for c in self._made if isinstance(c, (AsyncProducer, AsyncReader))]:
            await client.aclose()
            self._made.remove(client)
            if client is self._aproducer:
                self._aproducer = None
            if client is self._areader:
                self._areader = None

    # --- clients, made on first use ----------------------------------------------------

    def _sync_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer.from_settings(self.settings)
            self._made.append(self._producer)
        return self._producer

    def _sync_reader(self) -> Reader:
        if self._reader is None:
            self._reader = Reader.from_settings(self.settings)
            self._made.append(self._reader)
        return self._reader

    def _async_producer(self) -> AsyncProducer:
        if self._aproducer is None:
            self._aproducer = AsyncProducer.from_settings(self.settings)
            self._made.append(self._aproducer)
        return self._aproducer

    def _async_reader(self) -> AsyncReader:
        if self._areader is None:
            self._areader = AsyncReader.from_settings(self.settings)
            self._made.append(self._areader)
        return self._areader


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _check(result: WaitResult, receipt: Receipt) -> None:
    if not result.applied:
        raise MemstreamError(
            f"append {receipt.log_id or receipt.eid} of {receipt.owner} was dead-lettered: "
            f"{result.reason} (see `memstream dlq`)"
        )


def _page_sizes(limit: int | None, cap: int) -> Iterator[int]:
    """How many messages each history read asks for, newest page first: all of them, or
    the newest ``limit``. The first page is at most the cap the projection keeps, so the
    common read is one round trip to the read model; older pages come from the log."""
    left = limit
    size = min(PAGE, cap)
    while left is None or left > 0:
        want = size if left is None else min(size, left)
        yield want
        if left is not None:
            left -= want
        size = PAGE
