"""The vector projection: converges under any delivery order (items, deletes, messages,
TTLs), batches its embedding in the planner, never mixes embedders, writes nothing
without one; the stored int8 payload round-trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis
from hypothesis import example, given

from memstream.producers import events as ev
from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_memory import MemoryDeleted
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.embedders import Embedder
from memstream.projections.ops import Writes
from memstream.projections.vector_codec import HEAD, TOMBSTONE, decode_many, encode
from memstream.projections.vectors import Vectors, space_of, vector_key
from memstream.workers.plan import FeedEntry, Planner, Pointer
from tests.test_memory_convergence import (
    ITEMS,
    NOW,
    PAYLOADS,
    PROPERTY,
    RECENT,
    Case,
    _resaved,
    _saved_then_deleted,
    converge,
    streams,
)

MESSAGES = {
    "message.appended": PAYLOADS["episode.saved"].map(
        lambda e: MessageAppended(role="user", content=e.task or "hello")
    ),
    **PAYLOADS,
}


class Counting(Embedder):
    """A tiny deterministic embedder that counts its calls (the batching checks)."""

    name = "counting"
    dimension = 8

    def __init__(self) -> None:
        super().__init__(batch=1000)
        self.calls: list[int] = []

    def _embed_batch(self, texts: list[str]) -> Any:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), 8), np.float32)
        for i, text in enumerate(texts):
            for j, ch in enumerate(text.encode()):
                out[i, (ch + j) % 8] += 1.0
        return out


def test_payload_round_trips_within_half_a_step() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=256).astype(np.float32)
    v /= np.linalg.norm(v)
    payload = encode(v, 1_234)
    assert len(payload) == HEAD.size + 256
    rows, expiry = decode_many([payload], 256)
    assert expiry.tolist() == [1_234]
    assert float(rows[0] @ v) > 0.9999
    assert np.max(np.abs(rows[0] - v)) < 0.5 * np.max(np.abs(v)) / 127 + 1e-3
    zero, _ = decode_many([encode(np.zeros(4), 0)], 4)
    assert zero.tolist() == [[0.0] * 4]


@PROPERTY
@example(case=_saved_then_deleted())
@example(case=_resaved())
@given(case=streams(ITEMS, owners=("alice",)) | streams(("message.appended", *ITEMS),
                                                         payloads=MESSAGES))  # fmt: skip
def test_vectors_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [Vectors(Counting())], case, Settings())


@PROPERTY
@given(case=streams(("message.appended", *ITEMS), payloads=MESSAGES, start_ms=RECENT,
                    span_ms=16_000))  # fmt: skip
def test_vectors_with_ttls_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    config = Settings(episode_ttl_s=10, knowledge_ttl_s=12, skill_ttl_s=8, history_ttl_s=9)
    converge(r, [Vectors(Counting())], case, config)


def _event(n: int, event: Any, session: str | None = None) -> StoredEvent:
    return StoredEvent("alice", f"{RECENT + n}-0", event.TYPE, event.VERSION, event, session)


def _apply(projection: Vectors, event: StoredEvent, config: Settings) -> list[Any]:
    writes = Writes()
    projection.apply(event, ApplyContext(keys.Projection(0, 1), config, NOW), writes)
    return writes.ops


def test_a_delete_is_a_tombstone_and_spaces_never_mix() -> None:
    config = Settings()
    saved = _event(0, ev.EpisodeSaved(episode_id="e1", task="deploy redis"))
    deleted = _event(1, MemoryDeleted(kind="episode", item_id="e1"))
    ops = _apply(Vectors(Counting()), saved, config)
    space = space_of("counting", 8)
    key = vector_key(keys.Projection(0, 1), "alice", space, "episode")
    (lww,) = [op for op in ops if op[0] in ("LWW", "LWWZ") and op[1] == key]
    assert lww[2] == "e1" and len(lww[4]) == HEAD.size + 8
    (tomb,) = [
        op
        for op in _apply(Vectors(Counting()), deleted, config)
        if op[0] in ("LWW", "LWWZ") and op[1] == key
    ]
    assert tomb[4] == TOMBSTONE
    other = Counting()
    other.name = "counting-v2"
    assert all(key not in op for op in _apply(Vectors(other), saved, config))
    assert _apply(Vectors(), saved, Settings(embedder="none")) == []
    empty = _event(2, MessageAppended(role="user", content=[{"type": "image"}]), "s1")
    assert _apply(Vectors(Counting()), empty, config) == []


def test_the_planner_embeds_a_batch_in_one_call() -> None:
    embedder = Counting()
    projection = Vectors(embedder)
    on = Settings(embed_messages=True)  # message vectors are opt-in
    planner = Planner([projection], on, max_deliveries=5)
    events = [_event(i, ev.KnowledgeLearned(knowledge_id=f"k{i}", description=f"fact {i}"))
              for i in range(5)]  # fmt: skip
    events.append(_event(9, MessageAppended(role="user", content="hello there"), "s1"))
    entries = [FeedEntry(e.log_id, {}) for e in events]
    pointers: dict[str, Any] = {e.log_id: Pointer(e.owner, e.log_id) for e in events}
    logs: dict[str, Any] = {}
    for e in events:
        fields = {b"type": e.type.encode(), b"v": str(e.version).encode(),
                  b"ct": b"json", b"data": e.event.model_dump_json().encode()}  # fmt: skip
        if e.session:
            fields[b"session"] = e.session.encode()
        logs[e.log_id] = fields
    ctx = ApplyContext(keys.Projection(0, 1), on, NOW)
    out = planner.plan(ctx, "v1", entries, pointers, logs)
    assert out.applied == 6 and out.dead == 0
    assert embedder.calls == [6], "one embedding call for the whole batch"
    alone = [op for e in events for op in _apply(Vectors(Counting()), e, on)]
    planned = [op for _, ops in out.entries for op in ops if op[0] != "SPUB"]
    assert planned == alone, "batched vectors equal those embedded one by one"


def test_messages_get_no_vector_unless_the_deployment_asks() -> None:
    message = _event(1, MessageAppended(role="user", content="hello there"), "s1")
    assert _apply(Vectors(Counting()), message, Settings()) == []
    assert _apply(Vectors(Counting()), message, Settings(embed_messages=True)) != []
