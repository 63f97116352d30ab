"""LangGraph's checkpointer on memstream: ``MemstreamCheckpointSaver``.

A ``BaseCheckpointSaver`` over one owner: ``put``, ``put_writes`` and ``delete_thread``
append ``checkpoint.put`` / ``checkpoint.writes`` / ``checkpoint.thread_deleted`` events,
and ``get_tuple`` and ``list`` read the ``checkpoints`` projection
(``projections/checkpoints.py``) that workers fold from them. Requires
``pip install 'memstream[langgraph]'``.

- Threads: any string; the owner (an id) is fixed on the saver, and a thread id reaches
  a key only as a digest. Namespaces, checkpoint ids, channels and task ids must not
  contain control characters (``InvalidInputError`` names the field).
- Values: LangGraph's ``JsonPlusSerializer`` (``dumps_typed`` / ``loads_typed``), never
  with its pickle fallback; the bytes travel as msgpack ``bin`` in the events.
- Size: one ``put`` is one event, so a checkpoint with its new channel values must fit in
  the deployment's ``max_event_bytes`` (1 MiB by default); a larger one raises
  ``InvalidInputError`` naming its largest value (``channel_values['messages']``, say)
  before anything is sent.
- Read-your-writes: a read first waits until this saver's earlier appends are applied,
  at most ``wait_timeout`` seconds in all (default 5; ``WaitTimeoutError`` after that,
  e.g. when no worker runs). Another saver's writes are seen once a worker applied them.
- ``list``: newest checkpoint id first; ``filter`` is equality on metadata keys;
  ``before`` and ``limit`` as LangGraph defines them; ``list(None)`` covers every thread.

Sync methods use a blocking producer and reader, async ones an asyncio pair made on the
running loop (made again if called from another loop). ``close()`` / ``aclose()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from memstream.producers import keys
from memstream.producers.connection import sync_client
from memstream.producers.core import Append
from memstream.producers.errors import ConfigError, InvalidInputError, MemstreamError
from memstream.producers.events import Event
from memstream.producers.events_checkpoint import CheckpointThreadDeleted
from memstream.producers.producer import AsyncProducer, Producer
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.reader_sync import BlockingCore
from memstream.projections.wait import WaitResult

from . import checkpoint_plans as plans

__all__ = ["MemstreamCheckpointSaver"]

WAIT_TIMEOUT_S = 5.0
PAGE = 100
"""Checkpoints a ``list`` or ``get_tuple`` reads per round of its plan."""


class MemstreamCheckpointSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer whose checkpoints and writes are memstream events.

    ``owner``: whose log holds the threads (an id). ``settings``: where Redis is (or pass
    ``producer`` / ``reader`` / ``async_producer`` / ``async_reader``; they are not closed
    here). ``serde``: LangGraph's serializer (default ``JsonPlusSerializer()``; one with
    ``pickle_fallback`` is refused). ``wait_timeout``: seconds a read waits for this
    saver's own writes (read-your-writes). ``page``: checkpoints read per round.
    """

    def __init__(
        self,
        owner: str,
        *,
        settings: Settings | None = None,
        producer: Producer | None = None,
        reader: Reader | None = None,
        async_producer: AsyncProducer | None = None,
        async_reader: AsyncReader | None = None,
        serde: SerializerProtocol | None = None,
        wait_timeout: float = WAIT_TIMEOUT_S,
        page: int = PAGE,
    ) -> None:
        if getattr(serde, "pickle_fallback", False):
            raise ConfigError("serde: a pickle fallback is refused (memstream stores no pickle)")
        super().__init__(serde=serde or JsonPlusSerializer())
        self.owner = keys.check_id(owner, "owner")
        self.settings = settings or Settings()
        self.wait_timeout = wait_timeout
        self.page = max(1, page)
        self._producer, self._reader = producer, reader
        self._own_async = async_producer is None and async_reader is None
        self._aproducer, self._areader = async_producer, async_reader
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._core: BlockingCore | None = None
        self._made: list[Producer | Reader] = []
        self._amade: list[AsyncProducer | AsyncReader] = []
        self._unseen: list[Receipt] = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, owner: str, **options: Any) -> MemstreamCheckpointSaver:
        """``url``: the Redis URL; ``owner``: the owner id; ``options``: the other
        constructor arguments."""
        return cls(owner, settings=Settings.from_url(url), **options)

    # --- sync ---------------------------------------------------------------------------

    def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:  # fmt: skip
        """Store ``checkpoint`` (with the values of ``new_versions``) and ``metadata`` under
        ``config``'s thread and namespace; its parent is ``config``'s checkpoint id."""
        event = plans.put_event(self.serde, config, checkpoint, metadata, new_versions)
        self._append_sync([event])
        return _stored(event.thread_id, event.checkpoint_ns, event.checkpoint_id)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
        task_path: str = "",
    ) -> None:  # fmt: skip
        """Store ``writes`` (channel, value) of task ``task_id`` (at ``task_path``) against
        ``config``'s checkpoint; a repeated (task, index) replaces the earlier write."""
        event = plans.writes_event(self.serde, config, writes, task_id, task_path)
        if event is not None:
            self._append_sync([event])

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of ``thread_id`` (all namespaces)."""
        self._append_sync([CheckpointThreadDeleted(thread_id=str(thread_id))])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of ``source_thread_id`` to ``target_thread_id``
        (ids, metadata and order kept); a source without checkpoints copies nothing."""
        core = self._sync_core()
        plan = plans.copy_plan(self._pk_sync(core), self.owner, str(source_thread_id),
                               str(target_thread_id))  # fmt: skip
        events = plans.run_sync(plan, core.run)
        if events:
            self._append_sync(events)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove every checkpoint (of every thread) whose metadata ``run_id`` is one of
        ``run_ids``, with its writes."""
        if run_ids:
            self._remove_sync(None, {str(r) for r in run_ids})

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune ``thread_ids``: ``strategy`` ``"keep_latest"`` keeps the newest checkpoint
        of each namespace (with its writes), ``"delete"`` deletes the threads."""
        if strategy == "delete":
            events: list[Event] = [CheckpointThreadDeleted(thread_id=str(t)) for t in thread_ids]
            if events:
                self._append_sync(events)
        elif strategy == "keep_latest":
            if thread_ids:
                self._remove_sync([str(t) for t in thread_ids], None)
        else:
            raise InvalidInputError("strategy", "must be 'keep_latest' or 'delete'", strategy)

    def _remove_sync(self, threads: Sequence[str] | None, run_ids: set[str] | None) -> None:
        core = self._sync_core()
        plan = plans.removal_plan(self._pk_sync(core), self.owner, self.serde, threads,
                                  run_ids=run_ids)  # fmt: skip
        events = plans.run_sync(plan, core.run)
        if events:
            self._append_sync(events)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """``config``'s checkpoint (its ``checkpoint_id``, else the newest of its thread
        and namespace), or None."""
        core = self._sync_core()
        plan = plans.get_plan(self._pk_sync(core), self.owner, self.serde, config, self.page)
        return plans.run_sync(plan, core.run)

    def list(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:  # fmt: skip
        """Checkpoints of ``config``'s thread (every thread when None; every namespace
        unless it names one), newest first: metadata equal to ``filter``, ids below
        ``before``'s, at most ``limit``."""
        core = self._sync_core()
        pk = self._pk_sync(core)
        for step in self._list_steps(pk, config, filter, before, limit):
            if isinstance(step, _Threads):
                step.found = plans.run_sync(plans.threads_plan(pk, self.owner), core.run)
                continue
            found, cursor = plans.run_sync(step.plan, core.run)
            step.cursor = cursor
            yield from found[: step.room]
            step.given = len(found[: step.room])

    # --- async --------------------------------------------------------------------------

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:  # fmt: skip
        """:meth:`put` without blocking the event loop."""
        event = plans.put_event(self.serde, config, checkpoint, metadata, new_versions)
        await self._append_async([event])
        return _stored(event.thread_id, event.checkpoint_ns, event.checkpoint_id)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
        task_path: str = "",
    ) -> None:  # fmt: skip
        """:meth:`put_writes` without blocking the event loop."""
        event = plans.writes_event(self.serde, config, writes, task_id, task_path)
        if event is not None:
            await self._append_async([event])

    async def adelete_thread(self, thread_id: str) -> None:
        """:meth:`delete_thread` (``thread_id``) without blocking the event loop."""
        await self._append_async([CheckpointThreadDeleted(thread_id=str(thread_id))])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """:meth:`copy_thread` (``source_thread_id`` to ``target_thread_id``), async."""
        reader = await self._async_clients(reader=True)
        assert isinstance(reader, AsyncReader)
        await self._settle_async(reader)
        plan = plans.copy_plan(await self._pk_async(reader), self.owner, str(source_thread_id),
                               str(target_thread_id))  # fmt: skip
        events = await plans.run_async(plan, reader.run)
        if events:
            await self._append_async(events)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """:meth:`delete_for_runs` (``run_ids``) without blocking the event loop."""
        if run_ids:
            await self._remove_async(None, {str(r) for r in run_ids})

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """:meth:`prune` (``thread_ids``, ``strategy``) without blocking the event loop."""
        if strategy == "delete":
            events: list[Event] = [CheckpointThreadDeleted(thread_id=str(t)) for t in thread_ids]
            if events:
                await self._append_async(events)
        elif strategy == "keep_latest":
            if thread_ids:
                await self._remove_async([str(t) for t in thread_ids], None)
        else:
            raise InvalidInputError("strategy", "must be 'keep_latest' or 'delete'", strategy)

    async def _remove_async(self, threads: Sequence[str] | None, run_ids: set[str] | None) -> None:
        reader = await self._async_clients(reader=True)
        assert isinstance(reader, AsyncReader)
        await self._settle_async(reader)
        plan = plans.removal_plan(await self._pk_async(reader), self.owner, self.serde, threads,
                                  run_ids=run_ids)  # fmt: skip
        events = await plans.run_async(plan, reader.run)
        if events:
            await self._append_async(events)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """:meth:`get_tuple` (``config``) without blocking the event loop."""
        reader = await self._async_clients(reader=True)
        assert isinstance(reader, AsyncReader)
        await self._settle_async(reader)
        pk = await self._pk_async(reader)
        plan = plans.get_plan(pk, self.owner, self.serde, config, self.page)
        return await plans.run_async(plan, reader.run)

    async def alist(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:  # fmt: skip
        """:meth:`list` (``config``, ``filter``, ``before``, ``limit``) without blocking."""
        reader = await self._async_clients(reader=True)
        assert isinstance(reader, AsyncReader)
        await self._settle_async(reader)
        pk = await self._pk_async(reader)
        for step in self._list_steps(pk, config, filter, before, limit):
            if isinstance(step, _Threads):
                step.found = await plans.run_async(plans.threads_plan(pk, self.owner), reader.run)
                continue
            found, cursor = await plans.run_async(step.plan, reader.run)
            step.cursor = cursor
            for item in found[: step.room]:
                yield item
            step.given = len(found[: step.room])

    # --- list, shared by both ------------------------------------------------------------

    def _list_steps(
        self, pk: keys.Projection, config: RunnableConfig | None, filter: dict[str, Any] | None,
        before: RunnableConfig | None, limit: int | None,
    ) -> Iterator[_Threads | _Page]:  # fmt: skip
        """The pages ``list`` reads; the driver runs each and records what it gave."""
        conf = (config or {}).get("configurable") or {}
        cursor0 = ((before or {}).get("configurable") or {}).get("checkpoint_id")
        threads: list[str]
        if config is None:
            ask = _Threads()
            yield ask
            threads = ask.found
        else:
            threads = [plans.thread_of(config)[0]]
        ns = conf.get("checkpoint_ns")
        only = conf.get("checkpoint_id")
        left = limit
        for thread in threads:
            cursor = cursor0
            while left is None or left > 0:
                want = self.page if left is None else min(self.page, left)
                plan = plans.list_page(
                    pk,
                    self.owner,
                    self.serde,
                    thread,
                    ns=None if ns is None else str(ns),
                    before=cursor,
                    want=want,
                    filter=filter,
                    only=None if only is None else str(only),
                )
                page = _Page(plan, want if left is None else left)
                yield page
                if left is not None:
                    left -= page.given
                if page.cursor is None:
                    break
                cursor = page.cursor

    # --- appends and read-your-writes ---------------------------------------------------

    def _append_sync(self, events: Sequence[Event]) -> None:
        items = [Append(self.owner, e) for e in events]
        try:
            receipts = self._sync_producer().append_many(items)
        except InvalidInputError as e:
            raise _named(events, e) from e
        with self._lock:
            self._unseen += receipts

    async def _append_async(self, events: Sequence[Event]) -> None:
        items = [Append(self.owner, e) for e in events]
        producer = await self._async_clients(reader=False)
        assert isinstance(producer, AsyncProducer)
        try:
            receipts = await producer.append_many(items)
        except InvalidInputError as e:
            raise _named(events, e) from e
        with self._lock:
            self._unseen += receipts

    def _settle_sync(self, reader: Reader) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while (receipt := self._next_unseen()) is not None:
            _check(reader.wait(receipt, max(deadline - time.monotonic(), 0.001)), receipt)
            self._seen(receipt)

    async def _settle_async(self, reader: AsyncReader) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while (receipt := self._next_unseen()) is not None:
            _check(await reader.wait(receipt, max(deadline - time.monotonic(), 0.001)), receipt)
            self._seen(receipt)

    def _next_unseen(self) -> Receipt | None:
        with self._lock:
            return self._unseen[0] if self._unseen else None

    def _seen(self, receipt: Receipt) -> None:
        with self._lock:
            if receipt in self._unseen:
                self._unseen.remove(receipt)

    def _pk_sync(self, core: BlockingCore) -> keys.Projection:
        d = core.deployment()
        return keys.Projection(keys.partition(self.owner, d.partitions), d.version)

    async def _pk_async(self, reader: AsyncReader) -> keys.Projection:
        d = await reader.deployment()
        return keys.Projection(keys.partition(self.owner, d.partitions), d.version)

    # --- clients ------------------------------------------------------------------------

    def _sync_producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer.from_settings(self.settings)
                self._made.append(self._producer)
            return self._producer

    def _sync_core(self) -> BlockingCore:
        """The blocking query runner, after this saver's own writes are applied."""
        self._settle_sync(self._sync_reader())
        with self._lock:
            if self._core is None:
                self._core = BlockingCore(sync_client(self.settings), self.settings)
            return self._core

    def _sync_reader(self) -> Reader:
        with self._lock:
            if self._reader is None:
                self._reader = Reader.from_settings(self.settings)
                self._made.append(self._reader)
            return self._reader

    async def _async_clients(self, *, reader: bool) -> AsyncProducer | AsyncReader:
        """This loop's async producer or reader: asyncio clients belong to the loop that
        made them, so a saver used from a new loop makes new ones (and drops the old,
        whose loop may be gone)."""
        loop = asyncio.get_running_loop()
        if self._own_async and self._aloop is not loop:
            old, self._amade = self._amade, []
            if self._aloop is not None and not self._aloop.is_closed():
                for client in old:  # their loop is still alive, just not this one
                    asyncio.run_coroutine_threadsafe(client.aclose(), self._aloop)
            self._aloop, self._aproducer, self._areader = loop, None, None
        if reader:
            if self._areader is None:
                self._areader = AsyncReader.from_settings(self.settings)
                self._amade.append(self._areader)
            return self._areader
        if self._aproducer is None:
            self._aproducer = AsyncProducer.from_settings(self.settings)
            self._amade.append(self._aproducer)
        return self._aproducer

    def close(self) -> None:
        """Close the sync clients this saver made (``aclose`` closes the async ones)."""
        with self._lock:
            made, self._made = self._made, []
            core, self._core = self._core, None
        if core is not None:
            core.close()
        for client in made:
            client.close()
            if client is self._producer:
                self._producer = None
            if client is self._reader:
                self._reader = None

    async def aclose(self) -> None:
        """Close every client this saver made."""
        self.close()
        if self._aloop is asyncio.get_running_loop():
            for client in self._amade:
                await client.aclose()
        self._amade, self._aloop = [], None
        if self._own_async:
            self._aproducer, self._areader = None, None


class _Threads:
    """A list step: which threads ``list(None)`` covers (the driver fills ``found``)."""

    def __init__(self) -> None:
        self.found: list[str] = []


class _Page:
    """A list step: one page plan; the driver records its cursor and what it yielded."""

    def __init__(self, plan: plans.Plan[tuple[list[CheckpointTuple], str | None]], room: int):
        self.plan, self.room = plan, room
        self.cursor: str | None = None
        self.given = 0


def _stored(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ns,
                             "checkpoint_id": checkpoint_id}}  # fmt: skip


def _named(events: Sequence[Event], error: InvalidInputError) -> InvalidInputError:
    if error.field == "data" and len(events) == 1:
        return plans.oversized(events[0], error)
    return error


def _check(result: WaitResult, receipt: Receipt) -> None:
    if not result.applied:
        raise MemstreamError(
            f"checkpoint write {receipt.log_id} of {receipt.owner} was dead-lettered: "
            f"{result.reason} (see `memstream dlq`)"
        )
