"""Agent state: one nested document per owner, last writer wins by log id."""

from __future__ import annotations

from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import StateSaved

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .ops import Writes, sortable


def state_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("state", owner)


class State(Projection):
    name: ClassVar[str] = "state"
    key_names: ClassVar[frozenset[str]] = frozenset({"state"})
    handles: ClassVar[frozenset[str]] = frozenset({"state.saved"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        ttl = ctx.settings.state_ttl_s
        if not isinstance(event.event, StateSaved) or ctx.expired(event, ttl):
            return
        key = state_key(ctx.keys, event.owner)
        writes.lww(key, "doc", sortable(event.log_id), pack(event.event.state))
        if ttl is not None:
            writes.expire_at(key, event.ts_ms + ttl * 1000)


def read_state(pk: keys.Projection, owner: str) -> Query[dict[str, Any] | None]:
    key = state_key(pk, owner)

    def parse(replies: list[Any]) -> dict[str, Any] | None:
        raw = replies[0]
        if raw is None:
            return None
        _, doc = split_versioned(raw)
        return dict(doc)

    return Query([("HGET", key, "doc")], parse, (key,))
