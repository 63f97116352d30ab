"""Event types of long-term memory beyond the v1 catalogue: item deletion and learning
sessions. Importing :mod:`memstream.producers` registers them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .events import Event, Id, Text, register

MemoryKind = Literal["episode", "knowledge", "skill"]


@register
class MemoryDeleted(Event):
    """Delete one episode, knowledge item or skill definition (and its index entries).

    A save of the same id with a newer log id brings it back; an older one arriving late
    does not (last writer wins by log id)."""

    TYPE: ClassVar[str] = "memory.deleted"
    kind: MemoryKind
    item_id: Id


@register
class LearningRecorded(Event):
    """One learning session of a pattern-memory agent (kept capped, newest by log id)."""

    TYPE: ClassVar[str] = "learning.recorded"
    topic: Text
    summary: Text = ""
    patterns: list[Id] = Field(default_factory=list, max_length=256)
