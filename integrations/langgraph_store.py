"""LangGraph's long-term memory store on memstream: ``MemstreamStore``.

A ``BaseStore`` over one owner: ``put`` and ``delete`` append ``store.put`` /
``store.deleted`` events (one pipelined round trip per batch), and ``get``, ``search`` and
``list_namespaces`` read the ``store`` projection (``projections/store.py``) that workers
fold from them. Requires ``pip install 'memstream[langgraph]'``.

- ``search(prefix, query=..., filter=...)``: ``query`` is matched against the keyword
  index (the tokenizer of ``Reader.search``: stemmed words, BM25-style scores); the
  fields indexed are the put's ``index`` (default: the store's ``index_fields``, the
  whole value). ``filter`` compares value fields (equality, nested dicts, ``$eq``,
  ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``). A search scans at most ``scan_limit``
  items of the prefix.
- TTL (``ttl_config``, LangGraph's ``TTLConfig``, minutes): an item with a TTL is left
  out of every read once expired (``omit_expired`` is always on), ``list_namespaces``
  included; a read with ``refresh_ttl`` appends a ``store.refreshed`` event that extends
  the version it read. The sweeper (``sweep_ttl``, ``start_ttl_sweeper``, started on first
  use when ``sweep_interval_minutes`` is set) appends a ``store.expired`` event per
  expired item, which the worker folds into its removal (:mod:`.store_sweeper`).
- Read-your-writes: a batch first waits until this store's earlier appends are applied,
  at most ``wait_timeout`` seconds (default 5; ``WaitTimeoutError`` after that).

The implementation is async and runs on the store's private event loop thread, for
``batch`` and ``abatch`` alike (its clients live there); ``close()`` stops it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from memstream.producers import keys
from memstream.producers.core import Append
from memstream.producers.errors import MemstreamError
from memstream.producers.events import Event
from memstream.producers.events_store import StoreDeleted, StorePut, StoreRefreshed
from memstream.producers.helpers import make
from memstream.producers.producer import AsyncProducer
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader
from memstream.projections.store import (
    is_live,
    read_expiries,
    read_items,
    read_refs,
    ref_of,
    split_ref,
)
from memstream.projections.tokenize import tokens

from .store_query import bm25, item_fields, matches, ns_matches
from .store_sweeper import DEFAULT_INTERVAL_MIN, Sweeper, sweep

__all__ = ["MemstreamStore"]

T = TypeVar("T")
WAIT_TIMEOUT_S = 5.0
SCAN_LIMIT = 10_000


class MemstreamStore(BaseStore):
    """A LangGraph ``BaseStore`` whose writes are memstream events.

    ``owner``: whose memory holds the items (an id). ``settings``: where Redis is (or
    pass ``producer`` and ``reader``; they are not closed here). ``ttl``: LangGraph's
    ``TTLConfig``. ``index_fields``: the value fields the keyword index holds when a put
    names none (``"$"``: all text in the value). ``wait_timeout``: seconds a read waits
    for this store's own writes (read-your-writes). ``scan_limit``: items a search or
    namespace listing looks at, at most.
    """

    supports_ttl = True

    def __init__(
        self,
        owner: str,
        *,
        settings: Settings | None = None,
        producer: AsyncProducer | None = None,
        reader: AsyncReader | None = None,
        ttl: TTLConfig | None = None,
        index_fields: Sequence[str] = ("$",),
        wait_timeout: float = WAIT_TIMEOUT_S,
        scan_limit: int = SCAN_LIMIT,
    ) -> None:
        self.owner = keys.check_id(owner, "owner")
        self.settings = settings or Settings()
        self.ttl_config = ttl
        self.index_fields = list(index_fields)
        self.wait_timeout = wait_timeout
        self.scan_limit = scan_limit
        self._producer, self._reader = producer, reader
        self._made: list[AsyncProducer | AsyncReader] = []
        self._unseen: list[Receipt] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sweeper: Sweeper | None = None

    @classmethod
    def from_url(cls, url: str, owner: str, **options: Any) -> MemstreamStore:
        """``url``: the Redis URL; ``options``: the other constructor arguments."""
        return cls(owner, settings=Settings.from_url(url), **options)

    # --- BaseStore ----------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order (blocking); see :meth:`abatch`."""
        return self._call(self._batch(list(ops)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order: reads see every write earlier in the batch (and this
        store's earlier writes); the writes between two reads go in one pipelined append.

        It runs on the store's private loop (as :meth:`batch` does), so one store serves
        sync and async callers, and callers on several event loops, alike."""
        future = asyncio.run_coroutine_threadsafe(self._batch(list(ops)), self._private_loop())
        return await asyncio.wrap_future(future)

    async def _batch(self, ops: list[Op]) -> list[Result]:
        if self._sweeper is None and (self.ttl_config or {}).get("sweep_interval_minutes"):
            self.start_ttl_sweeper()
        results: list[Result] = []
        writes: list[Event] = []
        for op in ops:
            if isinstance(op, PutOp):
                writes.append(self._write_event(op))
                results.append(None)
                continue
            await self._flush(writes)
            writes = []
            await self._settle()
            if isinstance(op, GetOp):
                results.append(await self._get(op))
            elif isinstance(op, SearchOp):
                results.append(await self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(await self._namespaces(op))
            else:
                raise TypeError(f"unknown store op {type(op).__name__}")
        await self._flush(writes)
        return results

    # --- writes -------------------------------------------------------------------------

    def _write_event(self, op: PutOp) -> Event:
        ns = list(op.namespace)
        if op.value is None:
            return make(StoreDeleted, namespace=ns, key=op.key)
        index = self.index_fields if op.index is None else op.index
        ttl_s = None if op.ttl is None else op.ttl * 60  # LangGraph's TTLs are in minutes
        return make(StorePut, namespace=ns, key=op.key, value=dict(op.value), index=index,
                    ttl_s=ttl_s)  # fmt: skip

    async def _flush(self, events: list[Event]) -> None:
        if events:
            items = [Append(self.owner, event) for event in events]
            self._unseen += await self._async_producer().append_many(items)

    async def _settle(self) -> None:
        reader = self._async_reader()
        deadline = time.monotonic() + self.wait_timeout
        while self._unseen:
            receipt = self._unseen[0]
            result = await reader.wait(receipt, max(deadline - time.monotonic(), 0.001))
            if not result.applied:
                raise MemstreamError(
                    f"store write {receipt.log_id} of {receipt.owner} was dead-lettered: "
                    f"{result.reason} (see `memstream dlq`)"
                )
            self._unseen.pop(0)

    # --- reads --------------------------------------------------------------------------

    async def _items(self, refs: Sequence[str], refresh: bool) -> list[dict[str, Any] | None]:
        reader = self._async_reader()
        pk = await self._pk()
        found = await reader.run(read_items(pk, self.owner, refs))
        now = time.time() * 1000
        live = [i if i and (i["expires_at"] is None or i["expires_at"] > now) else None
                for i in found]  # fmt: skip
        if refresh:
            await self._flush([
                StoreRefreshed(namespace=list(i["namespace"]), key=i["key"], of=i["version"],
                               ttl_s=i["ttl_s"])
                for i in live if i is not None and i["ttl_s"] is not None
            ])  # fmt: skip
        return live

    async def _get(self, op: GetOp) -> Item | None:
        item = (await self._items([ref_of(op.namespace, op.key)], op.refresh_ttl))[0]
        return None if item is None else Item(**item_fields(item))

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        pk = await self._pk()
        refs = await self._async_reader().run(
            read_refs(pk, self.owner, op.namespace_prefix, self.scan_limit)
        )
        items = [i for i in await self._items(refs, False) if i is not None]
        if op.filter:
            items = [i for i in items if matches(i["value"], op.filter)]
        scored: list[tuple[float | None, dict[str, Any]]]
        if op.query:
            scored = [(s, i) for s, i in bm25(tokens(op.query), items) if s > 0]
            scored.sort(key=lambda si: -(si[0] or 0))
        else:
            scored = [(None, i) for i in sorted(items, key=lambda i: -i["updated_at"])]
        page = scored[op.offset : op.offset + op.limit]
        if op.refresh_ttl:
            await self._items([ref_of(i["namespace"], i["key"]) for _, i in page], True)
        return [SearchItem(score=s, **item_fields(i)) for s, i in page]

    async def _namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        pk, reader = await self._pk(), self._async_reader()
        refs = await reader.run(read_refs(pk, self.owner, (), self.scan_limit))
        expiries = await reader.run(read_expiries(pk, self.owner, refs))
        now = time.time() * 1000
        found: set[tuple[str, ...]] = set()
        for ref, expiry in zip(refs, expiries, strict=True):
            ns = split_ref(ref)[0]
            if is_live(expiry, now) and all(ns_matches(c, ns) for c in op.match_conditions or ()):
                found.add(ns if op.max_depth is None else ns[: op.max_depth])  # match first
        return sorted(found)[op.offset : op.offset + op.limit]

    # --- TTL sweeper --------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Remove the expired items now (blocking): append one ``store.expired`` event per
        expired item; return how many. A worker folds them (see :mod:`.store_sweeper`)."""
        return self._call(self._sweep())

    async def asweep_ttl(self) -> int:
        """:meth:`sweep_ttl` without blocking the caller's event loop."""
        future = asyncio.run_coroutine_threadsafe(self._sweep(), self._private_loop())
        return await asyncio.wrap_future(future)

    async def _sweep(self) -> int:
        await self._settle()  # sweep what this store's own writes left, not an older state
        return await sweep(self._async_reader(), await self._pk(), self.owner, self._flush)

    def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> concurrent.futures.Future[None]:
        """Sweep every ``sweep_interval_minutes`` (default: the ``TTLConfig``'s, else 5)
        on the store's private loop, the first sweep at once; return the sweeper's future
        (it ends when :meth:`stop_ttl_sweeper` or :meth:`close` stops it). A running
        sweeper is returned as it is."""
        interval = sweep_interval_minutes or (self.ttl_config or {}).get(
            "sweep_interval_minutes"
        ) or DEFAULT_INTERVAL_MIN  # fmt: skip
        with self._lock:
            if self._sweeper is None:
                self._sweeper = Sweeper(self._loop_locked(), self._sweep)
        return self._sweeper.start(float(interval))

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; ``timeout``: seconds to wait for it. True once stopped."""
        sweeper = self._sweeper
        return True if sweeper is None else sweeper.stop(timeout)

    async def _pk(self) -> keys.Projection:
        d = await self._async_reader().deployment()
        return keys.Projection(keys.partition(self.owner, d.partitions), d.version)

    # --- clients and the private loop ---------------------------------------------------

    def _async_producer(self) -> AsyncProducer:
        if self._producer is None:
            self._producer = AsyncProducer.from_settings(self.settings)
            self._made.append(self._producer)
        return self._producer

    def _async_reader(self) -> AsyncReader:
        if self._reader is None:
            self._reader = AsyncReader.from_settings(self.settings)
            self._made.append(self._reader)
        return self._reader

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            return self._loop_locked()

    def _loop_locked(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()
        return self._loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._private_loop()).result()

    async def _close_clients(self) -> None:
        for client in self._made:
            await client.aclose()
        self._made, self._producer, self._reader = [], None, None

    def close(self) -> None:
        """Stop the sweeper, close the clients this store made and stop its private loop."""
        self.stop_ttl_sweeper(timeout=5)
        with self._lock:
            self._sweeper = None
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_clients(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the caller's event loop."""
        await asyncio.to_thread(self.close)
