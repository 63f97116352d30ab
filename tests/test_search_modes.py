"""Search modes over the vectors a real worker stores: semantic finds paraphrases keyword
cannot, hybrid fuses both (and is the default once vectors exist), semantic equals exact
numpy top-k over the stored vectors page by page, filters and shared namespaces hold,
deletes drop out of the reader's cached matrix, and another embedder's space is refused."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import redis

from memstream.producers import AsyncProducer, ConfigError, InvalidInputError, Settings, keys
from memstream.producers import events as ev
from memstream.producers.entry import StoredEvent
from memstream.producers.events_memory import MemoryDeleted
from memstream.projections.base import ApplyContext
from memstream.projections.embedders.wordllama import WordLlamaEmbedder
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.search_modes import RRF_K
from memstream.projections.vector_codec import decode_many
from memstream.projections.vectors import Vectors, space_of, vector_key
from tests.test_vectors_projection import Counting
from tests.workers_util import running_worker

OWNER, TEAM = "agent.ada", "team.ops"
FACTS = [
    ("disk", "the deploy failed because the database ran out of disk space", ["ops"], False),
    ("login", "the login page is slow for users in europe", ["web"], None),
    ("python", "the team prefers python for scripts", [], None),
    ("invoice", "invoices are sent on the first monday of each month", [], True),
    ("backup", "backups run nightly to cold storage", ["ops"], True),
    ("colours", "the brand uses a blue and orange colour scheme", [], None),
]


async def _populate(url: str) -> None:
    async with AsyncProducer.from_url(url) as producer:
        for n, (eid, task, tags, success) in enumerate(FACTS):
            owner = TEAM if eid == "colours" else OWNER
            saved = ev.EpisodeSaved(
                episode_id=eid, task=task, tags=tags, success=success, importance=n / 10
            )
            await producer.append(owner, saved)
        await producer.append(OWNER, ev.KnowledgeLearned(
            knowledge_id="k1", description="disk quotas are enforced per database"))  # fmt: skip
        last = await producer.append(OWNER, ev.SkillDefined(
            name="restart-db", description="restart the database safely"))  # fmt: skip
    async with AsyncReader.from_url(url) as reader:
        await reader.wait(last, timeout=30)


def _reference(r: redis.Redis, query: str) -> list[str]:
    """Exact cosine top-k over the stored (int8) vectors: the semantic mode's reference."""
    space = space_of(WordLlamaEmbedder.name, 256)
    pk = keys.Projection(keys.partition(OWNER, 16), 1)
    q = WordLlamaEmbedder().embed([query])[0]
    scored = []
    for kind in ("episode", "knowledge", "skill"):
        raw: Any = r.hgetall(vector_key(pk, OWNER, space, kind))
        live = {k.decode(): v[24:] for k, v in raw.items() if len(v) > 24}
        rows, _ = decode_many(list(live.values()), 256)
        for ref, row in zip(live, rows, strict=True):
            scored.append((round(float(row @ q), 9), f"{kind}:{ref}"))
    return [ref for _, ref in sorted(scored, key=lambda t: (-t[0], t[1]))]


async def test_modes_rank_by_meaning_and_fuse(deployed: str, r: redis.Redis) -> None:
    async with running_worker(deployed):
        await _populate(deployed)
        async with AsyncReader.from_url(deployed, shared=[TEAM]) as reader:
            query = "storage full crash"
            keyword = await reader.search(OWNER, query, mode="keyword")
            semantic = await reader.search(OWNER, query, mode="semantic", limit=3)
            default = await reader.search(OWNER, query)
            assert (keyword["mode"], semantic["mode"], default["mode"]) == (
                "keyword", "semantic", "hybrid")  # fmt: skip
            assert "disk" not in [h["id"] for h in keyword["hits"]]
            assert semantic["hits"][0]["id"] == "disk"
            assert "disk" in [h["id"] for h in default["hits"][:3]]
            # RRF: a hit's score is a sum of 1 / (60 + rank) over the rankings holding it.
            assert all(0 < h["score"] <= 2 / (RRF_K + 1) for h in default["hits"])

            # Semantic pages = exact top-k over the stored vectors (owner's only here).
            async with AsyncReader.from_url(deployed) as own:
                alone = await _pages(own, OWNER, "why did the release break", limit=2)
            assert alone == _reference(r, "why did the release break")
            assert len(alone) == 7

            team = await reader.search(OWNER, "brand palette", mode="semantic", limit=1)
            assert (team["hits"][0]["owner"], team["hits"][0]["id"]) == (TEAM, "colours")
            ops = await reader.search(OWNER, "nightly copies", mode="semantic", tags=["ops"])
            assert {h["id"] for h in ops["hits"]} == {"disk", "backup"}
            won = await reader.search(OWNER, "copies", mode="semantic", success=True,
                                      types=["episode"])  # fmt: skip
            assert {h["id"] for h in won["hits"]} == {"invoice", "backup"}
            mixed = await reader.search(OWNER, "storage", mode="hybrid", types=["skill"])
            assert [h["type"] for h in mixed["hits"]] == ["skill"]
            with pytest.raises(InvalidInputError, match="mode"):
                await reader.search(OWNER, query, mode="fuzzy")

            async with AsyncProducer.from_url(deployed) as producer:
                gone = await producer.append(OWNER, MemoryDeleted(kind="episode", item_id="disk"))
            await reader.wait(gone, timeout=30)
            after = await reader.search(OWNER, query, mode="semantic", limit=20)
            assert "disk" not in [h["id"] for h in after["hits"]]
    with Reader.from_url(deployed) as sync_reader:
        found = sync_reader.search(OWNER, "storage full crash", mode="semantic", limit=2)
        assert found["hits"][0]["id"] != "disk"


async def _pages(reader: AsyncReader, owner: str, query: str, limit: int) -> list[str]:
    refs: list[str] = []
    cursor = None
    while True:
        page = await reader.search(owner, query, mode="semantic", limit=limit, cursor=cursor)
        refs += [f"{h['type']}:{h['id']}" for h in page["hits"]]
        cursor = page["cursor"]
        if cursor is None:
            return refs


async def test_another_embedders_vectors_are_refused(deployed: str, r: redis.Redis) -> None:
    """Vectors written by another embedder: semantic search says how to rebuild, and the
    default mode stays keyword rather than mixing spaces."""
    owner = "agent.other"
    p = keys.partition(owner, 16)
    now = int(time.time() * 1000)
    event = StoredEvent(owner, f"{now}-0", "episode.saved", 1,
                        ev.EpisodeSaved(episode_id="e1", task="deploy redis"))  # fmt: skip
    writes = Writes()
    Vectors(Counting()).apply(event, ApplyContext(keys.Projection(p, 1), Settings(), now), writes)
    call: Any = r.execute_command
    call(*write_command([writes.ops]))
    async with AsyncReader.from_url(deployed) as reader:
        with pytest.raises(ConfigError, match=r"counting.*memstream replay"):
            await reader.search(owner, "deploy", mode="semantic")
        assert (await reader.search(owner, "deploy"))["mode"] == "keyword"


def test_rrf_is_the_documented_formula() -> None:
    from memstream.projections.search_modes import _fuse

    fused = _fuse([(9.0, "a", "x"), (5.0, "a", "y")], [(0.9, "a", "y"), (0.1, "a", "z")])
    got = {ref: score for score, _, ref in fused}
    assert got == pytest.approx({"y": 1 / 62 + 1 / 61, "x": 1 / 61, "z": 1 / 62})
    assert [ref for _, _, ref in fused] == ["y", "x", "z"]
    assert np.isclose(sum(got.values()), 2 / 61 + 2 / 62)
