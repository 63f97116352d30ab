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
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
)

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.entry import StoredEvent
from memstream.producers.settings import Settings

from .ops import Writes

if TYPE_CHECKING:
    from .context import ContextSection
    from .reader import AsyncReader

T = TypeVar("T")
A = TypeVar("A")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])


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

    ``parse`` may return another :class:`Query` when a read needs a second round trip,
    or a :class:`Continue` when the next step needs the result with its archived values
    in place (see :func:`then`).
    """

    commands: Sequence[tuple[Any, ...]]
    parse: Callable[[list[Any]], T | Query[T] | Continue[T]]
    cacheable_keys: tuple[str, ...] = field(default=())
    archived: bool = True
    """False when the plan's result never holds an archived value's pointer (history
    messages are never archived): the runner then skips the walk that looks for one."""


@dataclass(frozen=True, slots=True)
class Continue(Generic[T]):
    """A plan step for the runner: put archived values in place of the pointers in
    ``value`` (an I/O only the runner does), then go on with ``next`` of it."""

    value: Any
    next: Callable[[Any], T | Query[T] | Continue[T]]


PlanStep: TypeAlias = "T | Query[T] | Continue[T]"
"""What a plan step yields: the result, another round trip, or a :class:`Continue`."""


Plan: TypeAlias = Callable[Concatenate[Deployment, P], Query[T]]
"""A read's plan builder: the active deployment and the read's arguments -> its Query."""


def then(query: Query[A], f: Callable[[A], PlanStep[T]]) -> Query[T]:
    """``query`` followed by ``f`` of its result (archived values resolved first): how a
    read composes plans without doing I/O, so both readers run the composition."""

    def parse(replies: list[Any]) -> PlanStep[T]:
        return _after(query.parse(replies), f)

    return Query(query.commands, parse, query.cacheable_keys)


def _after(step: PlanStep[A], f: Callable[[A], PlanStep[T]]) -> PlanStep[T]:
    if isinstance(step, Query):
        return then(step, f)
    if isinstance(step, Continue):
        inner = step
        return Continue(inner.value, lambda value: _after(inner.next(value), f))
    return Continue(step, f)


def pk_of(deployment: Deployment, owner: str) -> keys.Projection:
    """The active version's keys for ``owner``'s partition in ``deployment``."""
    return keys.Projection(keys.partition(owner, deployment.partitions), deployment.version)


class AsyncRunner(Protocol):
    """What a read mixin of :class:`~memstream.projections.reader.AsyncReader` may use.

    Mixins annotate ``self: AsyncRunner`` so each memory type keeps its reads in its own
    module while the reader stays one class. A read is one line: ``_read`` builds the
    read's plan from the active :class:`Deployment` and runs it; :class:`SyncRunner` runs
    the same plans on a blocking client.
    """

    settings: Settings
    shared: tuple[str, ...]

    @property
    def context_sections(self) -> tuple[ContextSection, ...]: ...

    async def run(self, query: Query[T]) -> T: ...

    async def deployment(self) -> Deployment: ...

    async def _pk(self, owner: str) -> keys.Projection: ...

    async def _read(self, plan: Plan[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


class SyncRunner(Protocol):
    """What a read mixin of the blocking ``Reader`` may use: the same plans as
    :class:`AsyncRunner`, run on the reader's blocking client in the caller's thread."""

    settings: Settings
    shared: tuple[str, ...]

    @property
    def context_sections(self) -> tuple[ContextSection, ...]: ...

    def run(self, query: Query[T]) -> T: ...

    def deployment(self) -> Deployment: ...

    def _pk(self, owner: str) -> keys.Projection: ...

    def _read(self, plan: Plan[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    @property
    def _async(self) -> AsyncReader: ...

    def _call(self, coro: Coroutine[Any, Any, T]) -> T: ...


def doc_from(twin: Callable[..., Any]) -> Callable[[F], F]:
    """Give a blocking read the docstring of its async ``twin``: one text for both, as
    they take the same parameters and return the same result."""

    def mark(method: F) -> F:
        method.__doc__ = twin.__doc__
        return method

    return mark
