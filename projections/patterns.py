"""Observed patterns, fix outcomes and learning sessions."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .ops import Writes


class Patterns(Projection):
    name: ClassVar[str] = "patterns"
    handles: ClassVar[frozenset[str]] = frozenset()

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        return None
