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
from memstream.producers.events_live import TtlExtended

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .context import ContextSection, step_line
from .ops import Writes, sortable


def working_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("working", owner)


class Working(Projection):
    name: ClassVar[str] = "working"
    key_names: ClassVar[frozenset[str]] = frozenset({"working"})
    context: ClassVar[ContextSection | None] = ContextSection(
        "working", "Recent steps", step_line, 0
    )
    handles: ClassVar[frozenset[str]] = frozenset({"step.recorded", "ttl.extended"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        ttl = ctx.settings.working_ttl_s
        floor = (keys.ttl_floor(ctx.keys, event.owner), "working")
        if isinstance(event.event, TtlExtended):
            # An active session keeps its steps: reads keep them until the floor too.
            at = event.ts_ms + event.event.seconds * 1000
            if at > ctx.now_ms:
                writes.extend_to([working_key(ctx.keys, event.owner)], at, floor)
            return
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
        writes.expire_at_floor(key, event.ts_ms + ttl * 1000, floor)


def read_working(
    pk: keys.Projection, owner: str, last: int, ttl_s: int, now_ms: int | None = None
) -> Query[list[dict[str, Any]]]:
    """The last ``last`` live steps, oldest first (a step lives for the TTL from its
    time, or until the owner's ``ttl.extended`` floor if that is later)."""
    key, floor = working_key(pk, owner), keys.ttl_floor(pk, owner)

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        horizon = now - ttl_s * 1000
        extended = int(replies[1] or 0) > now
        out = []
        for raw in replies[0]:
            log_id, body = split_versioned(raw)
            if body["ts"] > horizon or extended:
                out.append({"log_id": log_id, **body})
        return out

    commands = [("ZRANGE", key, -last, -1), ("HGET", floor, "working")]
    return Query(commands, parse, (key, floor))
