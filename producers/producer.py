"""``Producer`` and ``AsyncProducer``: the transports around :class:`AppendCore`.

Appends are O(1): one ``FCALL ms_append`` each, pipelined for ``append_many``. Connection
errors are retried by the client's retry policy; the ``eid`` made before the first try
makes a retried append return the first ids instead of writing twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Self

import redis
import redis.asyncio
from redis.exceptions import ResponseError

from . import keys
from .codec import ContentType
from .connection import async_client, sync_client
from .core import Append, AppendCore, AppendManyError, Planned, translate
from .deployment import Deployment
from .errors import MemstreamError
from .events import Event
from .helpers import AppendHelpers
from .receipt import Receipt
from .redact import Redactor
from .settings import Settings

PIPELINE_CHUNK = 1000
"""Commands per pipeline round trip: big enough to amortise the trip, small enough to
keep one reply buffer modest."""

ManyItems = Iterable[Append | tuple[Any, ...]]


def _as_append(item: Append | tuple[Any, ...]) -> Append:
    return item if isinstance(item, Append) else Append(*item)


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate producer options (redactor, ct) from settings fields."""
    own: dict[str, Any] = {k: options.pop(k) for k in ("redactor", "ct") if k in options}
    return own, options


def _default_redactor(settings: Settings) -> Redactor:
    return Redactor(emails=settings.redact_emails)


def _collect(plans: Sequence[Planned], replies: Sequence[Any]) -> list[Receipt]:
    receipts: list[Receipt | None] = []
    errors: dict[int, MemstreamError] = {}
    for i, (plan, reply) in enumerate(zip(plans, replies, strict=True)):
        if isinstance(reply, ResponseError):
            errors[i] = translate(reply)
            receipts.append(None)
        else:
            receipts.append(AppendCore.receipt(plan, reply))
    if errors:
        raise AppendManyError(receipts, errors)
    return [r for r in receipts if r is not None]


class _Construct:
    """Construction shared by both producers; each names its client factory."""

    @staticmethod
    def _make_client(settings: Settings) -> Any:
        raise NotImplementedError

    def __init__(
        self, client: Any, *, redactor: Redactor | None = None, ct: ContentType = "msgpack"
    ) -> None:
        self.redactor = redactor if redactor is not None else Redactor()
        self.ct: ContentType = ct
        self._core: AppendCore | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        options.setdefault("redactor", _default_redactor(settings))
        return cls(cls._make_client(settings), **options)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        own, rest = _split_options(options)
        return cls.from_settings(Settings.from_url(url, **rest), **own)


class AsyncProducer(_Construct, AppendHelpers[Coroutine[Any, Any, Receipt]]):
    """Asyncio producer. Build with :meth:`from_url` or :meth:`from_settings`."""

    @staticmethod
    def _make_client(settings: Settings) -> redis.asyncio.Redis:
        return async_client(settings)

    def __init__(self, client: redis.asyncio.Redis, **options: Any) -> None:
        super().__init__(client, **options)
        self.client = client
        self._lock = asyncio.Lock()

    async def core(self) -> AppendCore:
        """Read ``ms:meta`` once; partitions never change on a deployment with data."""
        if self._core is None:
            async with self._lock:
                if self._core is None:
                    meta: Any = await self.client.hgetall(keys.META)
                    self._core = AppendCore(Deployment.from_meta(meta), self.redactor, self.ct)
        return self._core

    async def append(
        self, owner: str, event: Event, *, session: str | None = None, eid: str | None = None
    ) -> Receipt:
        core = await self.core()
        plan = core.plan(Append(owner, event, session, eid))
        try:
            reply = await self.client.execute_command(*plan.command)  # type: ignore[no-untyped-call]
        except ResponseError as e:
            raise translate(e) from e
        return core.receipt(plan, reply)

    async def append_many(self, items: ManyItems) -> list[Receipt]:
        """Append many events, pipelined; every item is validated before anything is sent."""
        core = await self.core()
        plans = [core.plan(_as_append(item)) for item in items]
        replies: list[Any] = []
        for start in range(0, len(plans), PIPELINE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for plan in plans[start : start + PIPELINE_CHUNK]:
                pipe.execute_command(*plan.command)
            replies.extend(await pipe.execute(raise_on_error=False))
        return _collect(plans, replies)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncProducer:
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

    def core(self) -> AppendCore:
        """Read ``ms:meta`` once; partitions never change on a deployment with data."""
        if self._core is None:
            with self._lock:
                if self._core is None:
                    meta: Any = self.client.hgetall(keys.META)
                    self._core = AppendCore(Deployment.from_meta(meta), self.redactor, self.ct)
        return self._core

    def append(
        self, owner: str, event: Event, *, session: str | None = None, eid: str | None = None
    ) -> Receipt:
        core = self.core()
        plan = core.plan(Append(owner, event, session, eid))
        try:
            reply = self.client.execute_command(*plan.command)  # type: ignore[no-untyped-call]
        except ResponseError as e:
            raise translate(e) from e
        return core.receipt(plan, reply)

    def append_many(self, items: ManyItems) -> list[Receipt]:
        """Append many events, pipelined; every item is validated before anything is sent."""
        core = self.core()
        plans = [core.plan(_as_append(item)) for item in items]
        replies: list[Any] = []
        for start in range(0, len(plans), PIPELINE_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for plan in plans[start : start + PIPELINE_CHUNK]:
                pipe.execute_command(*plan.command)  # type: ignore[no-untyped-call]
            replies.extend(pipe.execute(raise_on_error=False))
        return _collect(plans, replies)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
