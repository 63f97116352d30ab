"""Episodes an agent saved (``episode.saved``)."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .ops import Writes


class Episodes(Projection):
    name: ClassVar[str] = "episodes"
    handles: ClassVar[frozenset[str]] = frozenset()

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        return None
