"""``Reader.context``: every section, structured and as text, always within the budget."""

from __future__ import annotations

from typing import Any

from memstream.producers import AsyncProducer
from memstream.producers import events as ev
from memstream.projections.context import compose
from memstream.projections.reader import AsyncReader
from tests.workers_util import running_worker

OWNER = "agent.ada"


async def test_context_has_every_section_within_budget(deployed: str) -> None:
    events: list[Any] = [
        (OWNER, ev.StepRecorded(action="open the kafka dashboard", observation="lag 5s",
                                success=True)),
        (OWNER, ev.EpisodeSaved(episode_id="e1", task="reduce kafka consumer lag",
                                outcome="added partitions", success=True, importance=0.9)),
        (OWNER, ev.EpisodeSaved(episode_id="e2", task="kafka broker disk full " * 40)),
        (OWNER, ev.SkillDefined(name="kafka-rebalance", description="rebalance kafka partitions")),
        (OWNER, ev.SkillExecuted(name="kafka-rebalance", success=True, duration_s=2.0)),
        (OWNER, ev.SkillExecuted(name="kafka-rebalance", success=False, duration_s=4.0)),
        (OWNER, ev.KnowledgeLearned(knowledge_id="k1", confidence=0.8,
                                    description="kafka lag grows with slow consumers")),
        (OWNER, ev.EpisodeSaved(episode_id="other", task="bake bread")),
    ]  # fmt: skip
    async with (
        running_worker(deployed), AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
    ):  # fmt: skip
        receipts = await producer.append_many(events)
        await reader.wait(receipts[-1])
        ctx = await reader.context(OWNER, "kafka lag", budget_chars=4000)
        assert [s["action"] for s in ctx["working"]] == ["open the kafka dashboard"]
        assert {e["episode_id"] for e in ctx["episodes"]} == {"e1", "e2"}
        assert ctx["episodes"][0]["episode_id"] == "e1"  # most relevant first
        [skill] = ctx["skills"]
        assert skill["stats"]["success_rate"] == 0.5 and skill["stats"]["executions"] == 2
        assert [k["knowledge_id"] for k in ctx["knowledge"]] == ["k1"]
        text = ctx["text"]
        for needle in ("## Recent steps", "## Relevant episodes", "## Skills", "## Knowledge",
                       "success 50% of 2 runs", "added partitions"):  # fmt: skip
            assert needle in text, needle
        assert "bread" not in text
        for budget in (1, 30, 80, 200, 500, 1000, 4000):
            small = await reader.context(OWNER, "kafka lag", budget_chars=budget)
            assert len(small["text"]) <= budget
            included = sum(len(small[s]) for s in ("working", "episodes", "skills", "knowledge"))
            assert included == small["text"].count("\n- ") + small["text"].startswith("- ")
        tight = await reader.context(OWNER, "kafka lag", budget_chars=200)
        assert tight["text"] and "…" in tight["text"]  # the long episode is shortened


def test_round_robin_keeps_every_section() -> None:
    items = {
        "working": [{"action": "w" * 50, "success": True}] * 5,
        "episodes": [{"task": "e" * 50, "success": None}] * 5,
        "skills": [{"name": "s", "description": "d", "stats": {"success_rate": None}}] * 5,
        "knowledge": [{"kind": "fact", "confidence": 0.5, "description": "k" * 50}] * 5,
    }
    out = compose(items, 400)
    assert len(out["text"]) <= 400
    assert all(out[name] for name in items)  # no section crowded out by the first
