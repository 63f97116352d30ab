"""Episodes an agent saved (``episode.saved``): task, outcome, success, duration, tags,
importance. Writes and convergence as for every item (see :mod:`.items`)."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .items import item_of, write_item
from .ops import Writes


class ItemProjection(Projection):
    """Folds the saves and deletes of one item kind."""

    kind: ClassVar[str]

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        item = item_of(event)
        if item is not None and item.kind == self.kind:
            write_item(event, ctx, writes, item)


class Episodes(ItemProjection):
    name: ClassVar[str] = "episodes"
    kind: ClassVar[str] = "episode"
    handles: ClassVar[frozenset[str]] = frozenset({"episode.saved", "memory.deleted"})
