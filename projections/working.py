"""Working memory: an owner's recent steps, in log order, with a short TTL (default 1 h).

Each step lives until its own time plus the TTL: the key expires at the newest step's
expiry, reads hide steps older than the TTL, and an event applied after its TTL has
passed writes nothing. Order and cap converge as in history (sortable-id members).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import StepRecorded

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .ops import Writes, sortable


def working_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("working", owner)


class Working(Projection):
    name: ClassVar[str] = "working"
    handles: ClassVar[frozenset[str]] = frozenset({"step.recorded"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        ttl = ctx.settings.working_ttl_s
        if not isinstance(event.event, StepRecorded) or ctx.expired(event, ttl):
            return
        step = event.event
        body = {
            "action": step.action,
            "observation": step.observation,
            "reasoning": step.reasoning,
            "success": step.success,
            "session": event.session,
            "ts": event.ts_ms,
        }
        key = working_key(ctx.keys, event.owner)
        writes.zlog(key, sortable(event.log_id), pack(body), cap=ctx.settings.working_cap)
        writes.expire_at(key, event.ts_ms + ttl * 1000)


def read_working(
    pk: keys.Projection, owner: str, last: int, ttl_s: int, now_ms: int | None = None
) -> Query[list[dict[str, Any]]]:
    """The last ``last`` live steps, oldest first."""
    key = working_key(pk, owner)

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        horizon = (now_ms if now_ms is not None else int(time.time() * 1000)) - ttl_s * 1000
        out = []
        for raw in replies[0]:
            log_id, body = split_versioned(raw)
            if body["ts"] > horizon:
                out.append({"log_id": log_id, **body})
        return out

    return Query([("ZRANGE", key, -last, -1)], parse, (key,))
