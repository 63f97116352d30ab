"""``Producer`` and ``AsyncProducer``: the transports around :class:`AppendCore`.

Appends are O(1): one ``FCALL ms_append`` each, pipelined for ``append_many``. Each call
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
import logging
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

import redis
import redis.asyncio

from . import keys
from .codec import ContentType
from .connection import async_client, sync_client
from .core import Append, AppendCore, AppendManyError, Planned, Prepared, command, prepare
from .deadline import acall, call
from .deployment import DEFAULT_EID_TTL, Deployment
from .driver import is_transient, translate_driver_error
from .errors import ConfigError, MemstreamError
from .events import Event
from .helpers import AppendHelpers
from .receipt import Receipt
from .redact import Redactor
from .settings import Settings

if TYPE_CHECKING:  # the outbox is imported only when one is asked for
    from .outbox import Outbox, Row
    from .outbox_flush import AsyncFlusher, SyncFlusher

log = logging.getLogger("memstream.producer")

PIPELINE_CHUNK = 1000
"""Commands per pipeline round trip: big enough to amortise the trip, small enough to
keep one reply buffer modest."""

OWN_OPTIONS = ("redactor", "ct", "outbox")
"""Producer options, as opposed to :class:`Settings` fields, in ``from_url``."""

ManyItems = Iterable[Append | tuple[Any, ...]]


def _as_append(item: Append | tuple[Any, ...]) -> Append:
    return item if isinstance(item, Append) else Append(*item)


def _default_redactor(settings: Settings) -> Redactor:
    return Redactor(emails=settings.redact_emails)


def _collect(plans: Sequence[Planned], replies: Sequence[Any], settings: Settings) -> list[Receipt]:
    receipts: list[Receipt | None] = []
    errors: dict[int, MemstreamError] = {}
    for i, (plan, reply) in enumerate(zip(plans, replies, strict=True)):
        if isinstance(reply, redis.RedisError):
            errors[i] = translate_driver_error(reply, settings)
            receipts.append(None)
        else:
            receipts.append(AppendCore.receipt(plan, reply))
    if errors:
        raise AppendManyError(receipts, errors)
    return [r for r in receipts if r is not None]


def _settings_of(client: Any) -> Settings:
    """Settings naming a client's address, for error messages, when none were given."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    if "path" in kw:
        return Settings(redis_url=f"unix://{kw['path']}")
    url = f"redis://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    return Settings(redis_url=url, username=kw.get("username"))


def _row_of(p: Prepared) -> tuple[str, str, tuple[Any, ...]]:
    return p.owner, p.eid, p.args


def _flush_commands(rows: Sequence[Row], core: AppendCore) -> list[tuple[Any, ...]]:
    n = core.deployment.partitions
    return [command(row.owner, keys.partition(row.owner, n), row.args) for row in rows]


class _Construct:
    """Construction shared by both producers; each names its client factory."""

    @staticmethod
    def _make_client(settings: Settings) -> Any:
        raise NotImplementedError

    def __init__(
        self,
        client: Any,
        *,
        redactor: Redactor | None = None,
        ct: ContentType = "msgpack",
        settings: Settings | None = None,
        outbox: str | None = None,
    ) -> None:
        """``client``: a redis-py client (sync or asyncio to match); ``redactor``: scrubs
        payloads before they leave; ``ct``: ``msgpack`` or ``json``; ``settings``: the
        deadlines and retries (default: the client's address with default settings);
        ``outbox``: path of the durable outbox file, or None for none."""
        self.redactor = redactor if redactor is not None else Redactor()
        self.ct: ContentType = ct
        self.settings = settings if settings is not None else _settings_of(client)
        self._core: AppendCore | None = None
        self._eid_ttl: int | None = None
        self.outbox_path = None if outbox is None else str(outbox)
        self._outbox: Outbox | None = None
        if self.outbox_path is not None:
            from .outbox import Outbox

            self._outbox = Outbox(self.outbox_path)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        """Build from :class:`Settings`; ``options``: ``redactor``, ``ct``, ``outbox``."""
        options.setdefault("redactor", _default_redactor(settings))
        return cls(cls._make_client(settings), settings=settings, **options)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a Redis URL; ``options`` are producer options (``redactor``,
        ``ct``, ``outbox``) or :class:`Settings` fields."""
        own = {k: options.pop(k) for k in OWN_OPTIONS if k in options}
        return cls.from_settings(Settings.from_url(url, **options), **own)

    def _new_core(self, meta: Any, eid_ttl: Any) -> AppendCore:
        ttl = int(eid_ttl) if eid_ttl else DEFAULT_EID_TTL
        if self.outbox_path is not None and ttl <= self.settings.outbox_retention_s:
            raise ConfigError(
                f"outbox {self.outbox_path}: the deployment's eid TTL ({ttl}s) must be longer "
                f"than outbox_retention_s ({self.settings.outbox_retention_s}s), or an append "
                "flushed late could be stored twice: raise eid_ttl (memstream init) or lower "
                "outbox_retention_s"
            )
        self._eid_ttl = ttl
        return AppendCore(Deployment.from_meta(meta), self.redactor, self.ct)

    def _pending(self, prepared: Prepared) -> Receipt:
        core = self._core
        p = keys.partition(prepared.owner, core.deployment.partitions) if core else -1
        return Receipt(prepared.owner, p, "", "", prepared.eid, True, self.outbox_path)

    def _outbox_or_raise(self, error: MemstreamError) -> None:
        """Raise ``error`` unless it is transient and there is an outbox to fall back to."""
        if self._outbox is None or not is_transient(error):
            raise error
        if not self._outbox.outage:
            log.warning("Redis is away (%s): appends go to outbox %s", error, self.outbox_path)
        self._outbox.outage = True  # the next appends need not spend a deadline each


class AsyncProducer(_Construct, AppendHelpers[Coroutine[Any, Any, Receipt]]):
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
            from .outbox_flush import AsyncFlusher

            asyncio.get_running_loop()
            self._flusher = AsyncFlusher(
                self._outbox, self._send_rows, self.settings, lambda: self._eid_ttl
            )

    async def _current_core(self) -> AppendCore:
        if self._core is None:
            async with self._lock:
                if self._core is None:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.hgetall(keys.META)
                    pipe.hget(keys.conf(0), "eid_ttl")
                    meta, ttl = await pipe.execute()
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
        prepared = prepare(Append(owner, event, session, eid), self.redactor, self.ct)
        if self._outbox is not None:
            self._start_flusher()
            if self._outbox.holds(prepared.owner) and await self._queue([prepared], True):
                return self._pending(prepared)
        try:
            return await acall(lambda: self._send_one(prepared), self.settings, self._deadline)
        except MemstreamError as e:
            self._outbox_or_raise(e)
        await self._queue([prepared], False)
        return self._pending(prepared)

    @property
    def _deadline(self) -> float:
        return self.settings.append_deadline_s

    async def _send_one(self, prepared: Prepared) -> Receipt:
        plan = (await self._current_core()).locate(prepared)
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
        async def go() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for cmd in _flush_commands(rows, await self._current_core()):
                pipe.execute_command(*cmd)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        return await acall(go, self.settings, self._deadline)

    async def append_many(self, items: ManyItems) -> list[Receipt]:
        """Append many events, pipelined; every item is validated before anything is sent.
        With an outbox, a batch that cannot be sent (or names an owner with outboxed
        appends) is kept whole, in order, and every receipt is pending."""
        prepared = [prepare(_as_append(i), self.redactor, self.ct) for i in items]
        outbox = self._outbox
        if outbox is not None:
            self._start_flusher()
        if outbox is None or not any(outbox.holds(p.owner) for p in prepared):
            try:
                return await acall(lambda: self._send_many(prepared), self.settings, self._deadline)
            except MemstreamError as e:
                self._outbox_or_raise(e)
        await self._queue(prepared, False)
        return [self._pending(p) for p in prepared]

    async def _send_many(self, prepared: list[Prepared]) -> list[Receipt]:
        core = await self._current_core()
        plans = [core.locate(p) for p in prepared]
        replies: list[Any] = []
        for start in range(0, len(plans), PIPELINE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for plan in plans[start : start + PIPELINE_CHUNK]:
                pipe.execute_command(*plan.command)
            replies.extend(await pipe.execute(raise_on_error=False))
        return _collect(plans, replies, self.settings)

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


class Producer(_Construct, AppendHelpers[Receipt]):
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
                    pipe.hget(keys.conf(0), "eid_ttl")
                    meta, ttl = pipe.execute()
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
        prepared = prepare(Append(owner, event, session, eid), self.redactor, self.ct)
        outbox = self._outbox
        if outbox is not None and outbox.store_if_pending(*_row_of(prepared)):
            return self._pending(prepared)
        try:
            return call(lambda: self._send_one(prepared), self.settings, self._deadline)
        except MemstreamError as e:
            self._outbox_or_raise(e)
        assert outbox is not None
        outbox.store(prepared.owner, prepared.eid, prepared.args)
        return self._pending(prepared)

    @property
    def _deadline(self) -> float:
        return self.settings.append_deadline_s

    def _send_one(self, prepared: Prepared) -> Receipt:
        plan = self._current_core().locate(prepared)
        reply = self.client.execute_command(*plan.command)  # type: ignore[no-untyped-call]
        return AppendCore.receipt(plan, reply)

    def _send_rows(self, rows: list[Row]) -> list[Any]:
        def go() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for cmd in _flush_commands(rows, self._current_core()):
                pipe.execute_command(*cmd)  # type: ignore[no-untyped-call]
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies

        return call(go, self.settings, self._deadline)

    def append_many(self, items: ManyItems) -> list[Receipt]:
        """Append many events, pipelined; every item is validated before anything is sent.
        With an outbox, a batch that cannot be sent (or names an owner with outboxed
        appends) is kept whole, in order, and every receipt is pending."""
        prepared = [prepare(_as_append(i), self.redactor, self.ct) for i in items]
        outbox = self._outbox
        if outbox is None or not any(outbox.holds(p.owner) for p in prepared):
            try:
                return call(lambda: self._send_many(prepared), self.settings, self._deadline)
            except MemstreamError as e:
                self._outbox_or_raise(e)
        assert outbox is not None
        for p in prepared:
            outbox.store(p.owner, p.eid, p.args)
        return [self._pending(p) for p in prepared]

    def _send_many(self, prepared: list[Prepared]) -> list[Receipt]:
        core = self._current_core()
        plans = [core.locate(p) for p in prepared]
        replies: list[Any] = []
        for start in range(0, len(plans), PIPELINE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for plan in plans[start : start + PIPELINE_CHUNK]:
                pipe.execute_command(*plan.command)  # type: ignore[no-untyped-call]
            replies.extend(pipe.execute(raise_on_error=False))
        return _collect(plans, replies, self.settings)

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
