"""Skill definitions and their exact execution statistics."""

from __future__ import annotations

from typing import ClassVar

from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .ops import Writes


class Skills(Projection):
    name: ClassVar[str] = "skills"
    handles: ClassVar[frozenset[str]] = frozenset()

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        return None
