"""Learned patterns and facts (``knowledge.learned``)."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .ops import Writes


class Knowledge(Projection):
    name: ClassVar[str] = "knowledge"
    handles: ClassVar[frozenset[str]] = frozenset()

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        return None
