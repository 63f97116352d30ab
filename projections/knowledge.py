"""Learned patterns and facts (``knowledge.learned``): description, confidence, tags.
Writes and convergence as for every item (see :mod:`.items`)."""

from __future__ import annotations

from typing import ClassVar

from .context import ContextSection, knowledge_line
from .episodes import ItemProjection


class Knowledge(ItemProjection):
    name: ClassVar[str] = "knowledge"
    context: ClassVar[ContextSection | None] = ContextSection(
        "knowledge", "Knowledge", knowledge_line, 3
    )
    kind: ClassVar[str] = "knowledge"
    handles: ClassVar[frozenset[str]] = frozenset({"knowledge.learned", "memory.deleted"})
