"""The planner checks the ops of a user's projection and dead-letters the entry with a
readable reason; the built-in projections' ops go to ms_apply unchecked (it checks them
again), so a worker with built-ins only still dead-letters nothing valid."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import redis

from memstream.producers import Producer, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.ops import Writes
from memstream.projections.registry import default_projections
from memstream.workers.batch import fetch_command
from memstream.workers.plan import FeedEntry, Planner, Pointer, built_in, parse_pointer

OWNER = "agent.plan"
P = keys.partition(OWNER, 16)


class InfiniteScore(Projection):
    """A user's projection with a bug: a score no sorted set can hold."""

    name: ClassVar[str] = "infinite"
    handles: ClassVar[frozenset[str]] = frozenset({MessageAppended.TYPE})
    key_names: ClassVar[frozenset[str]] = frozenset({"infinite"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        writes.zmax(ctx.keys.key("infinite", event.owner), "m", float("inf"))


def _plan(r: redis.Redis, url: str, planner: Planner) -> tuple[Any, list[FeedEntry]]:
    rows: Any = r.xrange(keys.feed(P))
    entries = [FeedEntry(i.decode(), f) for i, f in rows]
    pointers: dict[str, Pointer | Any] = {
        e.feed_id: parse_pointer(P, 16, e.fields) for e in entries
    }
    fetched: Any = r.execute_command(*fetch_command(P, list(pointers.values())))  # type: ignore[no-untyped-call]
    logs = {
        fid: dict(zip(row[::2], row[1::2], strict=True))
        for fid, row in zip(pointers, fetched, strict=True)
    }
    ctx = ApplyContext(keys.Projection(P, 1), Settings.from_url(url), int(time.time() * 1000))
    return planner.plan(ctx, "v1", entries, pointers, logs), entries


def test_a_user_projection_bad_op_is_dead_lettered_with_its_reason(
    r: redis.Redis, deployed: str
) -> None:
    with Producer.from_url(deployed) as producer:
        producer.append_message(OWNER, "s1", "user", "hello")
    assert built_in(default_projections()[0]) and not built_in(InfiniteScore())

    mixed = Planner([*default_projections(), InfiniteScore()], Settings.from_url(deployed), 5)
    outcome, entries = _plan(r, deployed, mixed)
    assert (outcome.applied, outcome.dead) == (0, 1)
    ((fid, ops),) = outcome.entries
    assert fid == entries[0].feed_id
    dlq = [op for op in ops if op[0] == "XADD"]
    reason = dict(zip(dlq[0][2::2], dlq[0][3::2], strict=True))["reason"]
    assert "out of range" in reason and "ZMAX" in reason, reason

    ours = Planner(default_projections(), Settings.from_url(deployed), 5)
    outcome, _ = _plan(r, deployed, ours)
    assert (outcome.applied, outcome.dead) == (1, 0)
