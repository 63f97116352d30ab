"""The hierarchical Bayesian world model (``evidence.observed``)."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .ops import Writes


class World(Projection):
    name: ClassVar[str] = "world"
    handles: ClassVar[frozenset[str]] = frozenset()

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        return None
