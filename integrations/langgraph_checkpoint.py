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
- ``copy_thread``, ``prune`` and ``delete_for_runs`` read first, then append: a removed
  checkpoint leaves every read at once; its bytes go when its thread is deleted.

Sync methods use a blocking producer and reader, async ones an asyncio pair made on the
running loop (made again if called from another loop). ``close()`` / ``aclose()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

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
from memstream.producers.errors import ConfigError, InvalidInputError
from memstream.producers.events import Event
from memstream.producers.events_checkpoint import CheckpointThreadDeleted
from memstream.producers.producer import AsyncProducer, Producer
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader, Reader

from . import checkpoint_plans as plans
from .checkpoint_link import SaverLink

__all__ = ["MemstreamCheckpointSaver"]

R = TypeVar("R")
WAIT_TIMEOUT_S = 5.0
PAGE = 100
"""Checkpoints a ``list`` or ``get_tuple`` reads per round of its plan."""
Planner = Callable[[keys.Projection], plans.Plan[R]]
Events = list[Event]  # named here: inside the saver, ``list`` is its method


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
        self.page = max(1, page)
        self.link = SaverLink(self.owner, self.settings, producer=producer, reader=reader,
                              async_producer=async_producer, async_reader=async_reader,
                              wait_timeout=wait_timeout)  # fmt: skip

    @classmethod
    def from_url(cls, url: str, owner: str, **options: Any) -> MemstreamCheckpointSaver:
        """``url``: the Redis URL; ``owner``: the owner id; ``options``: the other
        constructor arguments."""
        return cls(owner, settings=Settings.from_url(url), **options)

    @property
    def wait_timeout(self) -> float:
        """Seconds a read waits for this saver's own writes to be applied."""
        return self.link.wait_timeout

    # --- sync ---------------------------------------------------------------------------

    def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:  # fmt: skip
        """Store ``checkpoint`` (with the values of ``new_versions``) and ``metadata`` under
        ``config``'s thread and namespace; its parent is ``config``'s checkpoint id."""
        event = plans.put_event(self.serde, config, checkpoint, metadata, new_versions)
        self.link.append([event])
        return _stored(event.thread_id, event.checkpoint_ns, event.checkpoint_id)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
        task_path: str = "",
    ) -> None:  # fmt: skip
        """Store ``writes`` (channel, value) of task ``task_id`` (at ``task_path``) against
        ``config``'s checkpoint; a repeated (task, index) replaces the earlier write."""
        event = plans.writes_event(self.serde, config, writes, task_id, task_path)
        self.link.append([] if event is None else [event])

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of ``thread_id`` (all namespaces)."""
        self.link.append([CheckpointThreadDeleted(thread_id=str(thread_id))])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of ``source_thread_id`` to ``target_thread_id``
        (ids, metadata and order kept); a source without checkpoints copies nothing."""
        source, target = str(source_thread_id), str(target_thread_id)
        self.link.append(self._run(lambda pk: plans.copy_plan(pk, self.owner, source, target)))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove every checkpoint (of every thread) whose metadata ``run_id`` is one of
        ``run_ids``, with its writes."""
        if run_ids:
            self.link.append(self._run(self._removal(None, run_ids)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune ``thread_ids``: ``strategy`` ``"keep_latest"`` keeps the newest checkpoint
        of each namespace (with its writes), ``"delete"`` deletes the threads."""
        if _deletes(strategy):
            self.link.append([CheckpointThreadDeleted(thread_id=str(t)) for t in thread_ids])
        elif thread_ids:
            self.link.append(self._run(self._removal(thread_ids, None)))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """``config``'s checkpoint (its ``checkpoint_id``, else the newest of its thread
        and namespace), or None."""
        return self._run(lambda pk: plans.get_plan(pk, self.owner, self.serde, config, self.page))

    def list(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:  # fmt: skip
        """Checkpoints of ``config``'s thread (every thread when None; every namespace
        unless it names one), newest first: metadata equal to ``filter``, ids below
        ``before``'s, at most ``limit``."""
        core, pk = self.link.blocking()
        for step in _ListSteps(self, pk, config, filter=filter, before=before, limit=limit):
            step.result = plans.run_sync(step.plan, core.run)
            yield from step.shown()

    def _run(self, planner: Planner[R]) -> R:
        core, pk = self.link.blocking()
        return plans.run_sync(planner(pk), core.run)

    # --- async --------------------------------------------------------------------------

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:  # fmt: skip
        """:meth:`put` without blocking the event loop."""
        event = plans.put_event(self.serde, config, checkpoint, metadata, new_versions)
        await self.link.aappend([event])
        return _stored(event.thread_id, event.checkpoint_ns, event.checkpoint_id)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
        task_path: str = "",
    ) -> None:  # fmt: skip
        """:meth:`put_writes` without blocking the event loop."""
        event = plans.writes_event(self.serde, config, writes, task_id, task_path)
        await self.link.aappend([] if event is None else [event])

    async def adelete_thread(self, thread_id: str) -> None:
        """:meth:`delete_thread` (``thread_id``) without blocking the event loop."""
        await self.link.aappend([CheckpointThreadDeleted(thread_id=str(thread_id))])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """:meth:`copy_thread` (``source_thread_id`` to ``target_thread_id``), async."""
        source, target = str(source_thread_id), str(target_thread_id)
        events = await self._arun(lambda pk: plans.copy_plan(pk, self.owner, source, target))
        await self.link.aappend(events)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """:meth:`delete_for_runs` (``run_ids``) without blocking the event loop."""
        if run_ids:
            await self.link.aappend(await self._arun(self._removal(None, run_ids)))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """:meth:`prune` (``thread_ids``, ``strategy``) without blocking the event loop."""
        if _deletes(strategy):
            await self.link.aappend([CheckpointThreadDeleted(thread_id=str(t)) for t in thread_ids])
        elif thread_ids:
            await self.link.aappend(await self._arun(self._removal(thread_ids, None)))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """:meth:`get_tuple` (``config``) without blocking the event loop."""
        return await self._arun(
            lambda pk: plans.get_plan(pk, self.owner, self.serde, config, self.page)
        )

    async def alist(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:  # fmt: skip
        """:meth:`list` (``config``, ``filter``, ``before``, ``limit``) without blocking."""
        reader, pk = await self.link.asyncio()
        for step in _ListSteps(self, pk, config, filter=filter, before=before, limit=limit):
            step.result = await plans.run_async(step.plan, reader.run)
            for item in step.shown():
                yield item

    async def _arun(self, planner: Planner[R]) -> R:
        reader, pk = await self.link.asyncio()
        return await plans.run_async(planner(pk), reader.run)

    def _removal(
        self, threads: Sequence[str] | None, run_ids: Sequence[str] | None
    ) -> Planner[Events]:
        chosen = None if threads is None else [str(t) for t in threads]
        runs = None if run_ids is None else {str(r) for r in run_ids}
        return lambda pk: plans.removal_plan(pk, self.owner, self.serde, chosen, run_ids=runs)

    def close(self) -> None:
        """Close the sync clients this saver made (``aclose`` closes the async ones)."""
        self.link.close()

    async def aclose(self) -> None:
        """Close every client this saver made."""
        await self.link.aclose()


class _Step:
    """One read of ``list``: a plan; the driver stores its result, then shows it."""

    def __init__(self, plan: plans.Plan[Any], room: int | None) -> None:
        self.plan, self.room = plan, room
        self.result: Any = None

    def shown(self) -> list[CheckpointTuple]:
        if isinstance(self.result, tuple):
            found: list[CheckpointTuple] = self.result[0]
            return found if self.room is None else found[: self.room]
        return []


class _ListSteps:
    """The reads ``list`` makes, sync and async alike: threads (for ``list(None)``),
    then pages of each thread until ``limit`` is reached or the thread is exhausted."""

    def __init__(
        self, saver: MemstreamCheckpointSaver, pk: keys.Projection,
        config: RunnableConfig | None, *, filter: dict[str, Any] | None,
        before: RunnableConfig | None, limit: int | None,
    ) -> None:  # fmt: skip
        self.saver, self.pk, self.config, self.filter, self.limit = saver, pk, config, filter, limit
        self.before = ((before or {}).get("configurable") or {}).get("checkpoint_id")

    def __iter__(self) -> Iterator[_Step]:
        saver, conf = self.saver, (self.config or {}).get("configurable") or {}
        threads: list[str]
        if self.config is None:
            ask = _Step(plans.threads_plan(self.pk, saver.owner), None)
            yield ask
            threads = list(ask.result or [])
        else:
            threads = [plans.thread_of(self.config)[0]]
        ns, only = conf.get("checkpoint_ns"), conf.get("checkpoint_id")
        left = self.limit
        for thread in threads:
            cursor = self.before
            while left is None or left > 0:
                want = saver.page if left is None else min(saver.page, left)
                plan = plans.list_page(
                    self.pk, saver.owner, saver.serde, thread,
                    ns=None if ns is None else str(ns), before=cursor, want=want,
                    filter=self.filter, only=None if only is None else str(only),
                )  # fmt: skip
                page = _Step(plan, left)
                yield page
                if left is not None:
                    left -= len(page.shown())
                cursor = page.result[1]
                if cursor is None:
                    break


def _deletes(strategy: str) -> bool:
    if strategy not in ("keep_latest", "delete"):
        raise InvalidInputError("strategy", "must be 'keep_latest' or 'delete'", strategy)
    return strategy == "delete"


def _stored(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ns,
                             "checkpoint_id": checkpoint_id}}  # fmt: skip
