"""Folding events through the vector projection alone, and reading a message vector's
stored expiry back: what the session-TTL vector tests check against exact values."""

from __future__ import annotations

from typing import Any

import redis

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.ops import Writes, write_command
from memstream.projections.vector_codec import HEAD
from memstream.projections.vectors import MESSAGE, Vectors, live_key, space_of, vector_key
from tests.test_vectors_projection import Counting


def fold_vectors(
    r: redis.Redis, pk: keys.Projection, settings: Settings, events: list[StoredEvent], now: int
) -> None:
    """Apply ``events`` with the :class:`Vectors` projection (Counting embedder) in one
    ``ms_write`` call, in their order, at ``now`` (ms)."""
    ctx = ApplyContext(pk, settings, now)
    vectors = Vectors(Counting())
    batches = []
    for event in events:
        writes = Writes()
        vectors.apply(event, ctx, writes)
        batches.append(writes.ops)
    call: Any = r.execute_command
    call(*write_command([ops for ops in batches if ops]))


def stored_expiry(r: redis.Redis, pk: keys.Projection, owner: str, ref: str) -> tuple[int, int]:
    """A message vector's expiry as its payload and its live-set score hold it."""
    space = space_of(Counting.name, Counting.dimension)
    raw: Any = r.hget(vector_key(pk, owner, space, MESSAGE), ref)
    score: Any = r.zscore(live_key(pk, owner, space, MESSAGE), ref)
    payload_expiry, _ = HEAD.unpack(raw[24 : 24 + HEAD.size])
    return int(payload_expiry), int(score)
