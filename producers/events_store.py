"""Event types of the key-value document store behind LangGraph's ``BaseStore``
(``memstream.integrations.langgraph_store``, read model ``projections/store.py``).
Importing :mod:`memstream.producers` registers them.

An item is addressed by a namespace (a path of labels) and a key within it, as LangGraph
addresses it; neither ever becomes part of a Redis key as it is (the projection hashes).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from .events import Event, register

MAX_TTL_S = 10 * 365 * 86_400
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    # The projection joins labels with control characters (unit/record separators) to
    # keep a namespace's items contiguous in lexicographic order.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Label = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_control)]
StoreKey = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_control)]
Namespace = Annotated[list[Label], Field(min_length=1, max_length=16)]
FieldPath = Annotated[str, Field(min_length=1, max_length=256)]


@register
class StorePut(Event):
    """Put ``value`` at (``namespace``, ``key``): last writer wins by log id.

    ``index``: the value's fields whose text the keyword index holds (paths such as
    ``"text"`` or ``"meta.title"``; ``"$"`` the whole value); ``False`` keeps it out of
    the index. ``ttl_s``: seconds the item lives after this put (None: no expiry)."""

    TYPE: ClassVar[str] = "store.put"
    namespace: Namespace
    key: StoreKey
    value: dict[str, Any]
    index: list[FieldPath] | Literal[False] = Field(default_factory=lambda: ["$"])
    ttl_s: Annotated[float, Field(gt=0, le=MAX_TTL_S, allow_inf_nan=False)] | None = None


@register
class StoreDeleted(Event):
    """Delete the item at (``namespace``, ``key``); an older put arriving late stays deleted."""

    TYPE: ClassVar[str] = "store.deleted"
    namespace: Namespace
    key: StoreKey


@register
class StoreRefreshed(Event):
    """A read refreshed an item's TTL (LangGraph's ``refresh_on_read``): the version of the
    item that was read (``of``, its sortable log id) now lives ``ttl_s`` from this event."""

    TYPE: ClassVar[str] = "store.refreshed"
    namespace: Namespace
    key: StoreKey
    of: Annotated[str, Field(pattern=r"^\d{13}-\d{10}$")]
    ttl_s: Annotated[float, Field(gt=0, le=MAX_TTL_S, allow_inf_nan=False)]


@register
class StoreExpired(Event):
    """The TTL sweeper found version ``of`` (a sortable log id) of the item expired: it is
    removed as by a delete right after that version, so a later put still wins."""

    TYPE: ClassVar[str] = "store.expired"
    namespace: Namespace
    key: StoreKey
    of: Annotated[str, Field(pattern=r"^\d{13}-\d{10}$")]
