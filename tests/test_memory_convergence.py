"""Episodes, knowledge, skills, patterns and the search index converge under any delivery
order with duplicates, deletes, re-saves and TTLs straddling the projections' clock."""

from __future__ import annotations

import time
from typing import Any

import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memstream.producers import events as ev
from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_memory import LearningRecorded, MemoryDeleted
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.episodes import Episodes
from memstream.projections.knowledge import Knowledge
from memstream.projections.ops import Writes
from memstream.projections.patterns import Patterns
from memstream.projections.registry import default_projections
from memstream.projections.search_index import SearchIndex
from memstream.projections.skills import Skills
from memstream.projections.testing import (
    Deliveries,
    check_convergence,
    event_streams,
    with_deliveries,
)

NOW = (int(time.time()) + 86_400) * 1000
RECENT = NOW - 16_000
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Case = tuple[list[StoredEvent], Deliveries]

WORDS = st.lists(st.sampled_from(["deploy", "redis", "cache", "fix", "the", "Łódź", "x"]),
                 max_size=5).map(" ".join)  # fmt: skip
IDS = st.sampled_from(["e1", "e2"])
TAGS = st.lists(st.sampled_from(["ops", "db"]), max_size=2, unique=True)
KINDS = st.sampled_from(["episode", "knowledge", "skill"])

PAYLOADS: dict[str, Any] = {
    "episode.saved": st.builds(
        ev.EpisodeSaved, episode_id=IDS, task=WORDS, outcome=WORDS,
        success=st.none() | st.booleans(), duration_s=st.sampled_from([0.0, 1.5]),
        tags=TAGS, importance=st.sampled_from([0.0, 0.3, 1.0])),
    "knowledge.learned": st.builds(
        ev.KnowledgeLearned, knowledge_id=IDS, description=WORDS, tags=TAGS,
        confidence=st.sampled_from([0.1, 0.9])),
    "skill.defined": st.builds(
        ev.SkillDefined, name=IDS, actions=st.lists(WORDS, max_size=2), description=WORDS,
        tags=TAGS),
    "skill.executed": st.builds(
        ev.SkillExecuted, name=IDS, success=st.booleans(),
        duration_s=st.sampled_from([0.0, 0.25, 1.000001, 7.5])),
    "memory.deleted": st.builds(MemoryDeleted, kind=KINDS, item_id=IDS),
    "pattern.observed": st.builds(
        ev.PatternObserved, pattern=IDS, issue_kind=st.sampled_from(["bug", "style"]),
        detail=WORDS),
    "fix.outcome": st.builds(ev.FixOutcome, pattern=IDS, accepted=st.booleans(), detail=WORDS),
    "learning.recorded": st.builds(
        LearningRecorded, topic=WORDS, patterns=st.lists(IDS, max_size=2)),
}  # fmt: skip
ALL = tuple(PAYLOADS)
FOCUSED = {**PAYLOADS, "memory.deleted": st.builds(MemoryDeleted, kind=st.just("episode"),
                                                   item_id=IDS)}  # fmt: skip
"""Deletes aimed at episodes, so that a save and a delete of the same item meet often."""
ITEMS = ("episode.saved", "knowledge.learned", "skill.defined", "memory.deleted")


def streams(
    kinds: tuple[str, ...], owners: tuple[str, ...] = ("alice", "carol"),
    payloads: dict[str, Any] = PAYLOADS, **kw: Any,
) -> Any:  # fmt: skip
    """Few owners and ids, at least a handful of events: saves, re-saves and deletes of
    the same item meet often."""
    return with_deliveries(
        event_streams(owners=owners, kinds=kinds, payloads=payloads, min_size=4, max_size=30, **kw)
    )


EPISODES = ("episode.saved", "memory.deleted")


def _saved_then_deleted() -> Case:
    """Log order: e1 saved, e1 deleted. Delivered: the delete first."""
    save = ev.EpisodeSaved(episode_id="e1", task="deploy redis", importance=0.3)
    events = [
        StoredEvent("alice", f"{RECENT}-0", "episode.saved", 1, save),
        StoredEvent("alice", f"{RECENT + 5}-0", "memory.deleted", 1,
                    MemoryDeleted(kind="episode", item_id="e1")),
    ]  # fmt: skip
    return events, ([1, 0], [], [1])


def _resaved() -> Case:
    """e1 saved with other words and importance, delivered newest first."""
    a = ev.EpisodeSaved(episode_id="e1", task="deploy redis", importance=0.3)
    b = ev.EpisodeSaved(episode_id="e1", task="fix cache", importance=0.9)
    events = [StoredEvent("alice", f"{RECENT}-0", "episode.saved", 1, a),
              StoredEvent("alice", f"{RECENT}-1", "episode.saved", 1, b)]  # fmt: skip
    return events, ([1, 0], [0], [1])


def converge(r: redis.Redis, projections: list[Projection], case: Case, config: Settings) -> None:
    events, (order, duplicates, sizes) = case
    before = r.dbsize()
    check_convergence(r, projections, events, order=order, duplicates=duplicates,
                      batch_sizes=sizes, settings=config, now_ms=NOW)  # fmt: skip
    assert r.dbsize() == before


@PROPERTY
@example(case=_saved_then_deleted())
@example(case=_resaved())
@given(case=streams(ITEMS, owners=("alice",)) | streams(EPISODES, ("alice",), FOCUSED))
def test_items_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [Episodes(), Knowledge(), Skills()], case, Settings())


@PROPERTY
@example(case=_saved_then_deleted())
@example(case=_resaved())
@given(case=streams(ITEMS, owners=("alice",)) | streams(EPISODES, ("alice",), FOCUSED))
def test_search_index_converges(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [SearchIndex()], case, Settings())


@PROPERTY
@given(case=streams(("skill.defined", "skill.executed", "memory.deleted")))
def test_skill_stats_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [Skills()], case, Settings())


@PROPERTY
@given(case=streams(("pattern.observed", "fix.outcome", "learning.recorded")))
def test_patterns_converge_with_caps(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [Patterns()], case, Settings(pattern_ttl_s=3600))


@PROPERTY
@given(case=streams(ALL, start_ms=RECENT, span_ms=16_000))
def test_memory_ttls_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    config = Settings(episode_ttl_s=10, knowledge_ttl_s=12, skill_ttl_s=8, pattern_ttl_s=9)
    ctx = ApplyContext(keys.Projection(0, 1), config, NOW)
    for event in case[0]:
        if event.type == "episode.saved" and ctx.expired(event, config.episode_ttl_s):
            writes = Writes()
            for p in (Episodes(), SearchIndex()):
                p.apply(event, ctx, writes)
            assert writes.ops == [], "an expired episode must write nothing"
    converge(r, default_projections(), case, config)
