"""``Producer`` and ``AsyncProducer``: the transports around :class:`AppendCore`.

Appends are O(1): one ``FCALL ms_append`` each; ``append_many`` sends ``FCALL
ms_append_many``, one call per partition and up to 250 events (:mod:`.many`). Each call
runs within ``Settings.append_deadline_s`` (:mod:`.deadline`): connection errors and
timeouts are retried with jittered backoff until it passes, and the ``eid`` made before
the first try makes a retried append return the first ids instead of writing twice.
Every driver error reaches the caller as a :class:`MemstreamError`.

An append that raised may still have been stored (the reply was lost, not the write):
retry it with the same ``eid``, or give the producer an outbox, whose flush reuses the
eid and so makes that harmless.

With ``outbox="path/outbox.db"`` an append that cannot reach Redis (unreachable, timed
out, busy) is kept in a local SQLite file and a pending :class:`Receipt` comes back; a
background flusher sends it when Redis is back, and at the next start after a crash.
While an owner has outboxed appends, its new appends queue behind them (see
:mod:`.outbox` for the ordering rule and the eid TTL check).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from . import keys, many, replicas
from .connection import async_client, sync_client
from .core import AppendCore, Prepared, prepare, prepare_one
from .deadline import acall, call
from .errors import MemstreamError
from .events import Event
from .helpers import AppendHelpers
from .producer_base import (
    PIPELINE_CHUNK,
    ManyItems,
    ProducerBase,
    as_append,
    flush_commands,
    row_of,
)
from .receipt import Receipt
from .replicas import WaitState
from .settings import Settings

if TYPE_CHECKING:  # the outbox is imported only when one is asked for
    from .outbox import Row
    from .outbox_flush import AsyncFlusher, SyncFlusher

__all__ = ["PIPELINE_CHUNK", "AsyncProducer", "Producer"]


class AsyncProducer(ProducerBase, AppendHelpers[Coroutine[Any, Any, Receipt]]):
    """Asyncio producer. Build with :meth:`from_url` or :meth:`from_settings`."""

    @staticmethod
    def _make_client(settings: Settings) -> redis.asyncio.Redis:
        return async_client(settings)

    def __init__(self, client: redis.asyncio.Redis, **options: Any) -> None:
        super().__init__(client, **options)
        self.client = client
        self._lock = asyncio.Lock()
        self._flusher: AsyncFlusher | None = None
        with contextlib.suppress(RuntimeError):  # no running loop: start on first use
            self._start_flusher()

    def _start_flusher(self) -> None:
        if self._outbox is not None and self._flusher is None:
            from .outbox_flush import AsyncFlusher  # raises RuntimeError with no running loop

            self._flusher = AsyncFlusher(
                self._outbox, self._send_rows, self.settings, lambda: self._eid_ttl
            )

    async def _current_core(self) -> AppendCore:
        if self._core is None:
            async with self._lock:
                if self._core is None:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.hgetall(keys.META)
                    # HMGET, not HGET: the producer ACL role (docs/security.md) grants
                    # only the commands ms_append itself runs.
                    pipe.hmget(keys.conf(0), ["eid_ttl"])
                    meta, (ttl,) = await pipe.execute()
                    self._core = self._new_core(meta, ttl)
        return self._core

    async def core(self) -> AppendCore:
        """Read ``ms:meta`` once; partitions never change on a deployment with data."""
        return await acall(self._current_core, self.settings, self.settings.append_deadline_s)

    async def append(
        self, owner: str, event: Event, *, session: str | None = None, eid: str | None = None
    ) -> Receipt:
        """Append ``event`` to ``owner``'s log (``session`` for session events; ``eid``
        to make a retry of your own idempotent). Bounded by ``append_deadline_s``."""
        prepared = prepare_one(owner, event, session, eid, redactor=self.redactor, ct=self.ct)
        if self._outbox is not None:
            self._start_flusher()
            if self._outbox.holds(prepared.owner) and await self._queue([prepared], True):
                return self._pending(prepared)
        state = WaitState(earlier=eid is not None)  # the caller's eid may be stored already
        try:
            send = functools.partial(self._send_one, prepared, state)
            return await acall(send, self.settings, self._deadline)
        except MemstreamError as e:
            self._outbox_or_raise(e)
        await self._queue([prepared], False)
        return self._pending(prepared)

    @property
    def _deadline(self) -> float:
        return self.settings.append_deadline_s

    async def _send_one(self, prepared: Prepared, state: WaitState) -> Receipt:
        plan = (await self._current_core()).locate(prepared)
        if self.settings.wait_replicas:  # Settings.wait_replicas: see .replicas
            reply = await replicas.aone(self.client, plan, self.settings, state)
        else:
            reply = await self.client.execute_command(*plan.command)  # type: ignore[no-untyped-call]
        return AppendCore.receipt(plan, reply)

    async def _queue(self, items: list[Prepared], only_if_pending: bool) -> bool:
        outbox = self._outbox
        assert outbox is not None

        def store() -> bool:
            if only_if_pending:
                return all(outbox.store_if_pending(p.owner, p.eid, p.args) for p in items)
            for p in items:
                outbox.store(p.owner, p.eid, p.args)
            return True

        stored = await asyncio.to_thread(store)
        if self._flusher is not None:
            self._flusher.kick.set()
        return stored

    async def _send_rows(self, rows: list[Row]) -> list[Any]:
        state = WaitState(earlier=True)  # a flushed row may have been sent before

        async def go() -> list[Any]:
            core = await self._current_core()
            if self.settings.wait_replicas:
                waited = replicas.rows(rows, core.deployment.partitions)
                return await replicas.asend(self.client, waited, self.settings, state)
            pipe = self.client.pipeline(transaction=False)
            for cmd in flush_commands(rows, core):
                pipe.execute_command(*cmd)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        return await acall(go, self.settings, self._deadline)

    async def append_many(self, items: ManyItems) -> list[Receipt]:
        """Append many events: ``items`` are :class:`Append` or ``(owner, event[, session[,
        eid]])`` tuples. Every item is validated before anything is sent, then the items
        go by partition through ``FCALL ms_append_many`` (each owner's in order), up to
        1000 a round trip, each trip within ``append_deadline_s``. Raises
        :class:`AppendManyError` naming the refused items; the others are stored. With an
        outbox, the items no trip could send (all of them if the batch names an owner with
        outboxed appends) are outboxed in order, pending."""
        given = [as_append(i) for i in items]
        prepared = [prepare(a, self.redactor, self.ct) for a in given]
        outbox = self._outbox
        if outbox is not None:
            self._start_flusher()
        sent: dict[int, Any] = {}
        if outbox is None or not any(outbox.holds(p.owner) for p in prepared):
            try:
                state = WaitState(earlier=any(a.eid for a in given))
                for trip in many.plan_calls(await self.core(), prepared):
                    send = functools.partial(self._send_calls, trip, prepared, state)
                    self._absorb(trip, await acall(send, self.settings, self._deadline), sent)
            except MemstreamError as e:
                self._outbox_or_raise(e)
        queued = [p for i, p in enumerate(prepared) if i not in sent]
        if queued:
            await self._queue(queued, False)
        return self._many_result(prepared, sent)

    async def _send_calls(
        self, trip: list[many.Call], prepared: list[Prepared], state: WaitState
    ) -> list[Any]:
        if self.settings.wait_replicas:  # needs ms_append_many: no singles fallback
            return await replicas.acalls(self.client, trip, prepared, self.settings, state)

        async def send(commands: list[tuple[Any, ...]]) -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        commands, singles = self._trip_commands(trip, prepared)
        replies = await send(commands)
        if not singles and self._lacks_many(replies):
            commands, singles = many.single_commands(trip, prepared), True
            replies = await send(commands)
        return many.regroup(trip, replies) if singles else replies

    async def aclose(self) -> None:
        """Stop the flusher (pending appends stay in the outbox) and close the client."""
        if self._flusher is not None:
            await self._flusher.stop()
            self._flusher = None
        if self._outbox is not None:
            self._outbox.close()
        await self.client.aclose()

    async def __aenter__(self) -> AsyncProducer:
        self._start_flusher()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Producer(ProducerBase, AppendHelpers[Receipt]):
    """Blocking producer with the same core as :class:`AsyncProducer`."""

    @staticmethod
    def _make_client(settings: Settings) -> redis.Redis:
        return sync_client(settings)

    def __init__(self, client: redis.Redis, **options: Any) -> None:
        super().__init__(client, **options)
        self.client = client
        self._lock = threading.Lock()
        self._flusher: SyncFlusher | None = None
        if self._outbox is not None:
            from .outbox_flush import SyncFlusher

            self._flusher = SyncFlusher(
                self._outbox, self._send_rows, self.settings, lambda: self._eid_ttl
            )

    def _current_core(self) -> AppendCore:
        if self._core is None:
            with self._lock:
                if self._core is None:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.hgetall(keys.META)
                    pipe.hmget(keys.conf(0), ["eid_ttl"])  # HMGET: see AsyncProducer
                    meta, (ttl,) = pipe.execute()
                    self._core = self._new_core(meta, ttl)
        return self._core

    def core(self) -> AppendCore:
        """Read ``ms:meta`` once; partitions never change on a deployment with data."""
        return call(self._current_core, self.settings, self.settings.append_deadline_s)

    def append(
        self, owner: str, event: Event, *, session: str | None = None, eid: str | None = None
    ) -> Receipt:
        """Append ``event`` to ``owner``'s log (``session`` for session events; ``eid``
        to make a retry of your own idempotent). Bounded by ``append_deadline_s``."""
        prepared = prepare_one(owner, event, session, eid, redactor=self.redactor, ct=self.ct)
        outbox = self._outbox
        if outbox is not None and outbox.store_if_pending(*row_of(prepared)):
            return self._pending(prepared)
        state = WaitState(earlier=eid is not None)  # the caller's eid may be stored already
        try:
            return call(lambda: self._send_one(prepared, state), self.settings, self._deadline)
        except MemstreamError as e:
            self._outbox_or_raise(e)
        assert outbox is not None
        outbox.store(prepared.owner, prepared.eid, prepared.args)
        return self._pending(prepared)

    @property
    def _deadline(self) -> float:
        return self.settings.append_deadline_s

    def _send_one(self, prepared: Prepared, state: WaitState) -> Receipt:
        plan = self._current_core().locate(prepared)
        if self.settings.wait_replicas:  # Settings.wait_replicas: see .replicas
            reply = replicas.one(self.client, plan, self.settings, state)
        else:
            reply = self.client.execute_command(*plan.command)  # type: ignore[no-untyped-call]
        return AppendCore.receipt(plan, reply)

    def _send_rows(self, rows: list[Row]) -> list[Any]:
        state = WaitState(earlier=True)  # a flushed row may have been sent before

        def go() -> list[Any]:
            core = self._current_core()
            if self.settings.wait_replicas:
                waited = replicas.rows(rows, core.deployment.partitions)
                return replicas.send(self.client, waited, self.settings, state)
            pipe = self.client.pipeline(transaction=False)
            for cmd in flush_commands(rows, core):
                pipe.execute_command(*cmd)  # type: ignore[no-untyped-call]
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies

        return call(go, self.settings, self._deadline)

    def append_many(self, items: ManyItems) -> list[Receipt]:
        """Append many events: ``items`` are :class:`Append` or ``(owner, event[, session[,
        eid]])`` tuples. Every item is validated before anything is sent, then the items
        go by partition through ``FCALL ms_append_many`` (each owner's in order), up to
        1000 a round trip, each trip within ``append_deadline_s``. Raises
        :class:`AppendManyError` naming the refused items; the others are stored. With an
        outbox, the items no trip could send (all of them if the batch names an owner with
        outboxed appends) are outboxed in order, pending."""
        given = [as_append(i) for i in items]
        prepared = [prepare(a, self.redactor, self.ct) for a in given]
        outbox = self._outbox
        sent: dict[int, Any] = {}
        if outbox is None or not any(outbox.holds(p.owner) for p in prepared):
            try:
                state = WaitState(earlier=any(a.eid for a in given))
                for trip in many.plan_calls(self.core(), prepared):
                    send = functools.partial(self._send_calls, trip, prepared, state)
                    self._absorb(trip, call(send, self.settings, self._deadline), sent)
            except MemstreamError as e:
                self._outbox_or_raise(e)
        queued = [p for i, p in enumerate(prepared) if i not in sent]
        assert outbox is not None or not queued
        for p in queued:
            outbox.store(p.owner, p.eid, p.args)  # type: ignore[union-attr]
        return self._many_result(prepared, sent)

    def _send_calls(
        self, trip: list[many.Call], prepared: list[Prepared], state: WaitState
    ) -> list[Any]:
        if self.settings.wait_replicas:  # needs ms_append_many: no singles fallback
            return replicas.calls(self.client, trip, prepared, self.settings, state)

        def send(commands: list[tuple[Any, ...]]) -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)  # type: ignore[no-untyped-call]
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies

        commands, singles = self._trip_commands(trip, prepared)
        replies = send(commands)
        if not singles and self._lacks_many(replies):
            commands, singles = many.single_commands(trip, prepared), True
            replies = send(commands)
        return many.regroup(trip, replies) if singles else replies

    def close(self) -> None:
        """Stop the flusher (pending appends stay in the outbox) and close the client."""
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        if self._outbox is not None:
            self._outbox.close()
        self.client.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
