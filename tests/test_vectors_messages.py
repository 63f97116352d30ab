"""Conversation search over stored message vectors: semantic reaches past the hot window
(bodies from the log), respects the session filter and ``history.cleared``, and hybrid
fuses it with keyword."""

from __future__ import annotations

import redis

from memstream.producers import AsyncProducer, Settings, keys
from memstream.projections.history import history_key
from memstream.projections.reader import AsyncReader
from tests.workers_util import running_worker

OWNER = "agent.ada"
CAP = {"history_cap": 2, "embed_messages": True}  # message vectors are opt-in


async def test_semantic_message_search_covers_the_whole_history(
    deployed: str, r: redis.Redis
) -> None:
    async with running_worker(deployed, settings=CAP), AsyncProducer.from_url(deployed) as p:
        await p.append_message(OWNER, "s1", "user", "my database ran out of disk space")
        await p.append_message(OWNER, "s1", "assistant", "the invoice goes out on monday")
        await p.append_message(OWNER, "s1", "user", "what colour is the logo")
        await p.append_message(OWNER, "s1", "assistant", "blue and orange")
        await p.append_message(OWNER, "s2", "user", "the storage volume is full again")
        await p.append_message(OWNER, "s3", "user", "the disk filled up overnight")
        last = await p.clear_history(OWNER, "s3")
        async with AsyncReader.from_settings(Settings.from_url(deployed, **CAP)) as reader:
            await reader.wait(last, timeout=30)
            # s1 keeps only its 2 newest messages in Redis; the first comes from the log.
            pk = keys.Projection(keys.partition(OWNER, 16), 1)
            assert r.zcard(history_key(pk, OWNER, "s1")) == 2
            near = await reader.search_messages(OWNER, "storage full", mode="semantic", limit=2)
            want = {"my database ran out of disk space", "the storage volume is full again"}
            assert {h.message["content"] for h in near} == want
            assert all(h.message["log_id"] == h.log_id for h in near)
            assert near[0].score >= near[1].score
            everything = await reader.search_messages(OWNER, "disk", mode="semantic", limit=100)
            assert {h.session for h in everything} == {"s1", "s2"}, "s3 was cleared"
            assert len(everything) == 5
            only = await reader.search_messages(OWNER, "storage", "s2", mode="semantic")
            assert [h.session for h in only] == ["s2"]
            fused = await reader.search_messages(OWNER, "storage full", mode="hybrid", limit=3)
            assert fused[0].message["content"] == "the storage volume is full again"
            assert len({h.log_id for h in fused}) == len(fused)
