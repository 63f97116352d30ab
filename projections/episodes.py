"""Episodes an agent saved (``episode.saved``): task, outcome, success, duration, tags,
importance. Writes and convergence as for every item (see :mod:`.items`)."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .context import ContextSection, episode_line
from .items import item_of, write_item
from .ops import Writes


class ItemProjection(Projection):
    """Folds the saves and deletes of one item kind."""

    kind: ClassVar[str]
    key_names: ClassVar[frozenset[str]] = frozenset({"mem", "mem_t", "mem_i"})
    stats_type: ClassVar[str] = "items"
    """Episodes, knowledge and skill definitions share the item keys (:mod:`.items`)."""

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        item = item_of(event)
        if item is not None and item.kind == self.kind:
            write_item(event, ctx, writes, item)


class Episodes(ItemProjection):
    name: ClassVar[str] = "episodes"
    context: ClassVar[ContextSection | None] = ContextSection(
        "episodes", "Relevant episodes", episode_line, 1
    )
    kind: ClassVar[str] = "episode"
    handles: ClassVar[frozenset[str]] = frozenset({"episode.saved", "memory.deleted"})
