"""Searchable long-term memory items (episodes, knowledge, skill definitions): their
keys, their bodies, and the writes every item projection shares.

Convergence: an item's body is a last-writer-wins field versioned by log id (a delete is
a newer tombstone); the listing sets mirror the winning version through ``LWWZ``, so a
save that arrives after a newer delete or re-save changes nothing. Each item's key
expires at its event time plus the type's TTL; the listing sets drop expired members by
score on read and ``PRUNE`` them on later writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import EpisodeSaved, KnowledgeLearned, SkillDefined
from memstream.producers.events_memory import MemoryDeleted
from memstream.producers.settings import Settings

from .base import ApplyContext
from .codec import pack
from .ops import Writes, sortable

KINDS = ("episode", "knowledge", "skill")
NEVER_S = 100 * 365 * 86_400
"""Expiry of an item whose type has no TTL: a century, so that expiry order stays event
order in the listing sets (their score is the expiry) and no key TTL is set."""
TOMBSTONE = pack(None)
RECENT_SCALE = 1024
"""Listing score = expiry ms * 1024 + the log id's sequence (up to 1023): newest first
is log order, also for items saved within one millisecond; exact in a double until 2248."""


@dataclass(frozen=True, slots=True)
class Item:
    """One version of an item as its event describes it; ``body`` None is a delete."""

    kind: str
    item_id: str
    body: dict[str, Any] | None
    texts: tuple[str, ...] = ()
    importance: float = 0.5
    success: bool | None = None
    tags: tuple[str, ...] = ()


def item_of(event: StoredEvent) -> Item | None:
    """The item an event saves or deletes, or None for any other event."""
    e, ts = event.event, event.ts_ms
    if isinstance(e, EpisodeSaved):
        body = {"episode_id": e.episode_id, "task": e.task, "outcome": e.outcome,
                "success": e.success, "duration_s": e.duration_s, "tags": e.tags,
                "importance": e.importance, "ts": ts, "session": event.session}  # fmt: skip
        return Item("episode", e.episode_id, body, (e.task, e.outcome, " ".join(e.tags)),
                    e.importance, e.success, tuple(e.tags))  # fmt: skip
    if isinstance(e, KnowledgeLearned):
        body = {"knowledge_id": e.knowledge_id, "kind": e.kind, "description": e.description,
                "confidence": e.confidence, "tags": e.tags, "ts": ts}  # fmt: skip
        return Item("knowledge", e.knowledge_id, body, (e.description, " ".join(e.tags)),
                    e.confidence, None, tuple(e.tags))  # fmt: skip
    if isinstance(e, SkillDefined):
        body = {"name": e.name, "actions": e.actions, "description": e.description,
                "tags": e.tags, "ts": ts}  # fmt: skip
        texts = (e.name.replace(".", " ").replace("_", " ").replace("-", " "),
                 e.description, " ".join(e.actions), " ".join(e.tags))  # fmt: skip
        return Item("skill", e.name, body, texts, 0.5, None, tuple(e.tags))
    if isinstance(e, MemoryDeleted):
        return Item(e.kind, e.item_id, None)
    return None


def ttl_of(settings: Settings, kind: str) -> int | None:
    return {
        "episode": settings.episode_ttl_s,
        "knowledge": settings.knowledge_ttl_s,
        "skill": settings.skill_ttl_s,
    }[kind]


def expiry_ms(ts_ms: int, ttl_s: int | None) -> int:
    return ts_ms + (ttl_s if ttl_s is not None else NEVER_S) * 1000


def item_key(pk: keys.Projection, owner: str, kind: str, item_id: str) -> str:
    """Hash with one LWW field ``doc``: the item's newest body (or tombstone)."""
    return pk.key("mem", owner, kind, item_id)


def recent_key(pk: keys.Projection, owner: str, kind: str) -> str:
    """Sorted set id -> live version's expiry and sequence (:data:`RECENT_SCALE`): newest
    first, and liveness."""
    return pk.key("mem_t", owner, kind)


def important_key(pk: keys.Projection, owner: str, kind: str) -> str:
    """Sorted set id -> importance of the live version."""
    return pk.key("mem_i", owner, kind)


def write_item(event: StoredEvent, ctx: ApplyContext, writes: Writes, item: Item) -> None:
    """The body, the listing sets and their expiry for one save or delete."""
    ttl = ttl_of(ctx.settings, item.kind)
    if ctx.expired(event, ttl):
        return
    pk, owner, version = ctx.keys, event.owner, sortable(event.log_id)
    exp = expiry_ms(event.ts_ms, ttl)
    body = TOMBSTONE if item.body is None else pack(item.body)
    ik = item_key(pk, owner, item.kind, item.item_id)
    rk, mk = recent_key(pk, owner, item.kind), important_key(pk, owner, item.kind)
    live = item.body is not None
    seq = min(int(event.log_id.partition("-")[2] or 0), RECENT_SCALE - 1)
    mirrors = ((rk, str(exp * RECENT_SCALE + seq)), (mk, repr(item.importance)))
    for zkey, score in mirrors:
        writes.lwwz(ik, "doc", version, body, zkey=zkey, member=item.item_id,
                    score=score if live else None)  # fmt: skip
    writes.prune(rk, RECENT_SCALE, also=mk)
    if ttl is not None:
        for key in (ik, rk, mk):
            writes.expire_at(key, exp)
