"""What a projection is: the events it folds, the writes it emits, and its reads.

A projection never talks to Redis. ``apply`` turns one decoded event into convergent
ops (see :mod:`memstream.projections.ops`); the worker sends them through the ack-gated
``ms_apply`` call, and replay through ``ms_write``. Reads are :class:`Query` plans that
the sync and async readers both execute, so no read logic is written twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.settings import Settings

from .ops import Writes

if TYPE_CHECKING:
    from .context import ContextSection

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """Where and when an event is applied: version keys, settings, and the clock."""

    keys: keys.Projection
    settings: Settings
    now_ms: int

    def expired(self, event: StoredEvent, ttl_s: int | None) -> bool:
        """True when the event's memory has already outlived its TTL: write nothing, so
        replay never brings an expired memory back."""
        return ttl_s is not None and event.ts_ms + ttl_s * 1000 <= self.now_ms


class Projection(ABC):
    """One read model. Its ``apply`` must converge under any order of delivery."""

    name: ClassVar[str]
    handles: ClassVar[frozenset[str]]
    """The event types it folds (the worker routes only these to ``apply``)."""
    key_names: ClassVar[frozenset[str]] = frozenset()
    """The name of every key it writes (``pk.key(name, owner, ...)``): ``memstream stats``
    reports those keys under :attr:`stats_type`."""
    stats_type: ClassVar[str] = ""
    """The memory type its keys count towards in ``memstream stats`` (default: ``name``)."""
    context: ClassVar[ContextSection | None] = None
    """Its section of ``Reader.context``, if it has one (see :mod:`.context`)."""

    @abstractmethod
    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        """Append this event's ops to ``writes``; never read Redis here."""


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """A read plan: commands to pipeline, and how to turn their replies into a result.

    ``parse`` may return another :class:`Query` when a read needs a second round trip.
    """

    commands: Sequence[tuple[Any, ...]]
    parse: Callable[[list[Any]], T | Query[T]]
    cacheable_keys: tuple[str, ...] = field(default=())


class AsyncRunner(Protocol):
    """What a read mixin of :class:`~memstream.projections.reader.AsyncReader` may use.

    Mixins annotate ``self: AsyncRunner`` so each memory type keeps its reads in its own
    module while the reader stays one class.
    """

    settings: Settings
    shared: tuple[str, ...]

    async def run(self, query: Query[T]) -> T: ...

    async def _pk(self, owner: str) -> keys.Projection: ...


class SyncRunner(Protocol):
    """What a read mixin of the blocking ``Reader`` may use: ``_async`` is the
    :class:`AsyncReader` it wraps, ``_call`` runs one of its coroutines to completion."""

    @property
    def _async(self) -> Any: ...

    def _call(self, coro: Coroutine[Any, Any, T]) -> T: ...
