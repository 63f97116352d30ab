"""Reads of episodes, knowledge, skills and patterns: get, pages, counts, deletes, exact
skill statistics, capped fix outcomes and learning sessions, insights; sync twins."""

from __future__ import annotations

import math
import random
from typing import Any

from memstream.producers import AsyncProducer, LearningRecorded, MemoryDeleted
from memstream.producers import events as ev
from memstream.projections.reader import AsyncReader, Reader
from tests.workers_util import running_worker

OWNER = "agent.ada"


async def _apply(url: str, events: list[Any]) -> None:
    async with AsyncProducer.from_url(url) as producer, AsyncReader.from_url(url) as reader:
        receipts = await producer.append_many(events)
        await reader.wait(receipts[-1], timeout=30)


async def test_items_get_pages_counts_and_deletes(deployed: str) -> None:
    events: list[Any] = [
        (OWNER, ev.EpisodeSaved(episode_id=f"e{i}", task=f"task {i}", importance=(i % 5) / 4))
        for i in range(12)
    ]
    events += [
        (OWNER, ev.KnowledgeLearned(knowledge_id="k1", description="a fact", confidence=0.9)),
        (OWNER, MemoryDeleted(kind="episode", item_id="e3")),
        (OWNER, ev.EpisodeSaved(episode_id="e5", task="task 5 again", importance=0.0)),
    ]
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        await _apply(deployed, events)
        assert await reader.episode_count(OWNER) == 11
        assert await reader.episode(OWNER, "e3") is None
        e5 = await reader.episode(OWNER, "e5")
        assert e5 is not None and e5["task"] == "task 5 again" and e5["importance"] == 0.0
        seen, cursor = [], None
        while True:
            page = await reader.episodes(OWNER, limit=4, cursor=cursor)
            seen += [e["episode_id"] for e in page["items"]]
            cursor = page["cursor"]
            if cursor is None:
                break
        # Newest first: e5 was saved again last.
        assert seen == ["e5", "e11", "e10", "e9", "e8", "e7", "e6", "e4", "e2", "e1", "e0"]
        by_imp = await reader.episodes(OWNER, order="importance", limit=20)
        imps = [e["importance"] for e in by_imp["items"]]
        assert imps == sorted(imps, reverse=True) and len(imps) == 11
        assert await reader.knowledge_count(OWNER) == 1
        k = await reader.knowledge_item(OWNER, "k1")
        assert k is not None and k["confidence"] == 0.9 and k["kind"] == "fact"
        assert (await reader.knowledge(OWNER))["items"][0]["knowledge_id"] == "k1"


async def test_skill_statistics_are_exact(deployed: str) -> None:
    rng = random.Random(5)
    runs = [(rng.random() < 0.7, round(rng.uniform(0, 3), 6)) for _ in range(1500)]
    events: list[Any] = [(OWNER, ev.SkillDefined(name="deploy", actions=["build", "ship"],
                                                 description="ship it", tags=["ops"]))]  # fmt: skip
    events += [(OWNER, ev.SkillExecuted(name="deploy", success=s, duration_s=d)) for s, d in runs]
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        await _apply(deployed, events)
        skill = await reader.skill(OWNER, "deploy")
        assert skill is not None and skill["actions"] == ["build", "ship"]
        stats = skill["stats"]
        ok = sum(1 for s, _ in runs if s)
        assert stats["executions"] == 1500 and stats["successes"] == ok
        assert stats["success_rate"] == ok / 1500
        micros = sum(round(d * 1_000_000) for _, d in runs)
        assert stats["mean_duration_s"] == micros / 1500 / 1_000_000
        newest = sorted(d for _, d in runs[-1000:])
        assert stats["p95_duration_s"] == newest[math.ceil(0.95 * 1000) - 1]
        assert stats["last_run"]["duration_s"] == runs[-1][1]
        assert await reader.skill_count(OWNER) == 1
        assert (await reader.skills(OWNER))["items"][0]["name"] == "deploy"
        assert (await reader.skill_stats(OWNER, "never"))["executions"] == 0


async def test_patterns_insights_and_caps(deployed: str) -> None:
    rng = random.Random(9)
    events: list[Any] = []
    freq: dict[str, int] = {}
    fixes: dict[str, list[bool]] = {}
    for i in range(1100):
        pattern = rng.choice(["sql-injection", "n-plus-one", "magic-number", "dead-code"])
        if i % 2:
            freq[pattern] = freq.get(pattern, 0) + 1
            kind = "security" if pattern == "sql-injection" else "smell"
            events.append((OWNER, ev.PatternObserved(pattern=pattern, issue_kind=kind)))
        else:
            accepted = rng.random() < 0.6
            fixes.setdefault(pattern, []).append(accepted)
            events.append((OWNER, ev.FixOutcome(pattern=pattern, accepted=accepted, detail=f"{i}")))
    fix_details = [e.detail for _, e in events if isinstance(e, ev.FixOutcome)]
    events += [(OWNER, LearningRecorded(topic=f"session {i}")) for i in range(510)]
    events += [(OWNER, ev.FixOutcome(pattern="dead-code", accepted=True, detail=f"late {i}"))
               for i in range(500)]  # fmt: skip
    fixes["dead-code"] += [True] * 500
    fix_details += [f"late {i}" for i in range(500)]
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        await _apply(deployed, events)
        found = await reader.insights(OWNER, top=10)
        want = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
        assert [(p["pattern"], p["frequency"]) for p in found["patterns"]] == want
        for p in found["patterns"]:
            outcomes = fixes[p["pattern"]]
            assert (p["accepted"], p["rejected"]) == (sum(outcomes), len(outcomes) - sum(outcomes))
            assert p["acceptance_rate"] == sum(outcomes) / len(outcomes)
        assert {k["issue_kind"] for k in found["issue_kinds"]} == {"security", "smell"}
        kept = await reader.fix_outcomes(OWNER, last=1000)
        assert [f["detail"] for f in kept] == fix_details[::-1][:1000]  # the newest 1,000
        sessions = await reader.learning_sessions(OWNER, last=1000)
        assert [s["topic"] for s in sessions] == [f"session {i}" for i in range(509, 9, -1)]
        assert await reader.pattern_count(OWNER) == len(freq)
        one = await reader.pattern(OWNER, "dead-code")
        assert one is not None and one["frequency"] == freq["dead-code"]


def test_sync_reader_twins(deployed: str) -> None:
    from memstream.producers import Producer

    with Producer.from_url(deployed) as producer, Reader.from_url(deployed) as reader:
        receipt = producer.append(OWNER, ev.EpisodeSaved(episode_id="s1", task="sync read"))
        import asyncio

        async def work() -> None:
            async with running_worker(deployed):
                await asyncio.to_thread(reader.wait, receipt)

        asyncio.run(work())
        assert reader.episode(OWNER, "s1")["task"] == "sync read"
        assert reader.episode_count(OWNER) == 1
        assert reader.search(OWNER, "sync")["hits"][0]["id"] == "s1"
        assert "sync read" in reader.context(OWNER, "sync", budget_chars=200)["text"]
