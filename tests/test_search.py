"""Search: bad input, filters, expiry (no ghost hits, not even after a replay), shared
namespaces, and the tokenizer shared by both sides."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from memstream.producers import AsyncProducer, InvalidInputError, MemoryDeleted, Settings
from memstream.producers import events as ev
from memstream.projections.reader import AsyncReader
from memstream.projections.tokenize import key_part, tokens
from memstream.workers.replay import replay_all
from tests.workers_util import running_worker

OWNER = "agent.ada"


def test_tokens_are_deterministic_and_key_safe() -> None:
    # Snowball English stems: "cache"/"caching", "failed"/"fails" meet on one term.
    assert tokens("The Redis-cache FAILED, and the fix_was: retry!") == [
        "redi", "cach", "fail", "fix", "retri"]  # fmt: skip
    assert tokens("caching fails retries") == ["cach", "fail", "retri"]
    assert set(tokens("Sintra train")) == set(tokens("Trains to Sintra"))
    fullwidth = "\uff26\uff55\uff4c\uff4cwidth"  # "Full" in fullwidth letters
    assert tokens(f"{fullwidth} Łódź") == ["fullwidth", "łódź"]  # NFKC + casefold
    assert key_part("redis") == "redis"
    assert key_part("łódź").startswith("u=") and key_part("łódź") == key_part("ŁÓDŹ".casefold())
    assert tokens("") == [] and tokens("the and of") == []


class _All:
    """Receipts to wait for: owners live in different partitions, applied independently."""

    def __init__(self, receipts: list[Any]) -> None:
        self.receipts = receipts


async def _load(url: str, events: list[Any], **settings: Any) -> tuple[AsyncReader, _All]:
    async with AsyncProducer.from_url(url) as producer:
        receipts = await producer.append_many(events)
    reader = AsyncReader.from_settings(Settings.from_url(url, **settings))
    return reader, _All(receipts)


async def _wait(reader: AsyncReader, pending: _All) -> None:
    for receipt in pending.receipts:
        await reader.wait(receipt)


async def test_bad_input_is_refused_with_the_field(deployed: str) -> None:
    async with AsyncReader.from_url(deployed) as reader:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"query": ""}, "query"),
            ({"query": "   "}, "query"),
            ({"query": "redis", "limit": 0}, "limit"),
            ({"query": "redis", "limit": 1001}, "limit"),
            ({"query": "redis", "limit": True}, "limit"),
            ({"query": "redis", "types": ["episode", "diary"]}, "types"),
            ({"query": "redis", "cursor": "not a cursor!"}, "cursor"),
            ({"query": "redis", "cursor": "gqFhAQ"}, "cursor"),
            ({"query": "redis", "tags": ["bad tag"]}, "tags"),
            ({"query": "redis", "since": "yesterday"}, "since"),
        ]
        for kwargs, field in cases:
            query = kwargs.pop("query")
            with pytest.raises(InvalidInputError) as info:
                await reader.search(OWNER, query, **kwargs)
            assert info.value.field == field, (kwargs, info.value)
        with pytest.raises(InvalidInputError, match=r"diary.*known: episode, knowledge, skill"):
            await reader.search(OWNER, "x", types=["diary"])
        with pytest.raises(InvalidInputError) as info:
            await reader.context(OWNER, "x", budget_chars=0)
        assert info.value.field == "budget_chars"
        with pytest.raises(InvalidInputError) as info:
            await reader.episodes(OWNER, cursor="@@@")
        assert info.value.field == "cursor"


async def test_cursor_of_another_query_is_refused(deployed: str) -> None:
    events = [(OWNER, ev.EpisodeSaved(episode_id=f"e{i}", task="redis cache")) for i in range(5)]
    reader, last = await _load(deployed, events)
    async with running_worker(deployed), reader:
        await _wait(reader, last)
        first = await reader.search(OWNER, "redis", limit=2)
        assert first["total"] == 5 and first["cursor"] is not None
        with pytest.raises(InvalidInputError, match="another query"):
            await reader.search(OWNER, "cache", limit=2, cursor=first["cursor"])
        second = await reader.search(OWNER, "redis", limit=2, cursor=first["cursor"])
        ids = [h["id"] for h in first["hits"] + second["hits"]]
        assert len(set(ids)) == 4


async def test_filters_select_hits_without_changing_scores(deployed: str) -> None:
    events: list[Any] = [
        (OWNER, ev.EpisodeSaved(episode_id="ok", task="deploy redis", success=True, tags=["ops"])),
        (OWNER, ev.EpisodeSaved(episode_id="ko", task="deploy redis", success=False)),
        (OWNER, ev.KnowledgeLearned(knowledge_id="k1", description="redis needs memory")),
        (OWNER, ev.SkillDefined(name="redis-restart", description="restart redis safely")),
    ]
    reader, last = await _load(deployed, events)
    async with running_worker(deployed), reader:
        await _wait(reader, last)
        # BM25 scores: hybrid ranks (and so scores) are taken over the filtered hits.
        every = await reader.search_all(OWNER, "redis", mode="keyword")
        scores = {h["id"]: h["score"] for h in every["hits"]}
        assert set(scores) == {"ok", "ko", "k1", "redis-restart"}
        hit = (await reader.search(OWNER, "redis", types=["episode"], success=True,
                                   mode="keyword"))["hits"]  # fmt: skip
        # The recency boost is computed at read time: a millisecond between two reads
        # moves the ninth decimal, so the scores agree to a relative 1e-6, not exactly.
        assert [h["id"] for h in hit] == ["ok"]
        assert hit[0]["score"] == pytest.approx(scores["ok"], rel=1e-6)
        assert [h["id"] for h in (await reader.search(OWNER, "redis", tags="ops"))["hits"]] == [
            "ok"]  # fmt: skip
        skills = (await reader.search(OWNER, "restart", types="skill"))["hits"]
        assert skills[0]["item"]["name"] == "redis-restart"
        later = await reader.search_all(OWNER, "redis", since=time.time() + 60)
        assert later["hits"] == [] and later["total"] == 0
        assert (await reader.search(OWNER, "the and"))["hits"] == []  # stop words only


async def test_expired_and_deleted_items_are_never_hits(deployed: str, r: redis.Redis) -> None:
    ttl = {"episode_ttl_s": 2, "knowledge_ttl_s": 2}
    events: list[Any] = [
        (OWNER, ev.EpisodeSaved(episode_id="old", task="migrate the redis cluster")),
        (OWNER, ev.KnowledgeLearned(knowledge_id="k", description="redis cluster slots")),
        (OWNER, ev.EpisodeSaved(episode_id="gone", task="redis cluster resharding")),
        (OWNER, MemoryDeleted(kind="episode", item_id="gone")),
    ]
    reader, last = await _load(deployed, events, **ttl)
    async with running_worker(deployed, settings=ttl), reader:
        await _wait(reader, last)
        hits = (await reader.search_all(OWNER, "redis cluster"))["hits"]
        assert {h["id"] for h in hits} == {"old", "k"}
        assert await reader.episode(OWNER, "gone") is None
        await asyncio.sleep(2.1)
        assert (await reader.search_all(OWNER, "redis cluster"))["hits"] == []
        assert await reader.episode(OWNER, "old") is None
        assert await reader.episode_count(OWNER) == 0
        assert (await reader.episodes(OWNER))["items"] == []
        # Replay folds the same log: the expired items must not come back.
        config = Settings.from_url(deployed, **ttl)
        summary = await asyncio.to_thread(replay_all, r, config, grace_s=0.2)
        assert summary.to_version == 2
        assert (await reader.search_all(OWNER, "redis cluster"))["hits"] == []
        assert not [k for k in r.scan_iter("ms:*:v2:ix*") if b"agent.ada" in k]


async def test_shared_namespaces_are_searched_working_memory_is_not(deployed: str) -> None:
    team = "team.alpha"
    events: list[Any] = [
        (OWNER, ev.EpisodeSaved(episode_id="mine", task="tune postgres vacuum")),
        (team, ev.EpisodeSaved(episode_id="ours", task="postgres failover drill")),
        (team, ev.StepRecorded(action="postgres team secret step")),
        ("agent.bob", ev.EpisodeSaved(episode_id="bobs", task="postgres upgrade")),
    ]
    _, last = await _load(deployed, events)
    async with (
        running_worker(deployed),
        AsyncReader.from_url(deployed, shared=[team]) as reader,
        AsyncReader.from_url(deployed) as private,
    ):  # fmt: skip
        await _wait(reader, last)
        hits = (await reader.search(OWNER, "postgres"))["hits"]
        assert {(h["owner"], h["id"]) for h in hits} == {(OWNER, "mine"), (team, "ours")}
        alone = (await private.search(OWNER, "postgres"))["hits"]
        assert [(h["owner"], h["id"]) for h in alone] == [(OWNER, "mine")]
        ctx = await reader.context(OWNER, "postgres")
        assert ctx["working"] == [] and "secret" not in ctx["text"]
        assert {e["episode_id"] for e in ctx["episodes"]} == {"mine", "ours"}
