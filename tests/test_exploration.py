"""Exploration patterns: exact statistics, ranking by Jaccard x Beta estimate, and
reproducible Thompson sampling."""

from __future__ import annotations

import random

import pytest
import redis
from pydantic import ValidationError

from memstream.producers import InvalidIdError, InvalidInputError, keys
from memstream.producers.events_world import ExplorationRecorded
from memstream.projections.reader import Reader
from tests.world_util import fold, stored

OWNER = "explorer"


def _try(pattern: str, tags: list[str], success: bool, reward: float = 0.0) -> ExplorationRecorded:
    return ExplorationRecorded(trigger="novel_situation", pattern=pattern, context_tags=tags,
                               success=success, reward=reward)  # fmt: skip


def test_statistics_are_exact_and_order_free(r: redis.Redis, deployed: str) -> None:
    rng = random.Random(9)
    tries = [_try("probe", ["door"], rng.random() < 0.5, rng.uniform(-3, 3)) for _ in range(300)]
    events = [stored(OWNER, i, e) for i, e in enumerate(tries)]
    shuffled = events[:]
    rng.shuffle(shuffled)
    fold(r, shuffled)
    with Reader.from_url(deployed) as reader:
        (probe,) = reader.exploration(OWNER, "novel_situation", ["door"])
    nano = sum(round(t.reward * 1e9) for t in tries)
    stats_key = keys.Projection(keys.partition(OWNER, 16), 1).key(
        "explore", OWNER, "novel_situation"
    )
    assert int(r.hget(stats_key, "r:probe") or 0) == nano
    assert probe["tries"] == 300
    assert probe["successes"] == sum(t.success for t in tries)
    assert probe["mean_reward"] == nano / 1e9 / 300
    assert probe["last_used_ms"] == max(e.ts_ms for e in events)


def test_ranking_by_jaccard_times_beta_mean(r: redis.Redis, deployed: str) -> None:
    history = (
        [_try("open-door", ["door", "dark"], True)] * 3
        + [_try("open-door", ["door"], False)]
        + [_try("turn-on-light", ["dark"], True)] * 9
        + [_try("shout", ["noisy"], True)] * 5
    )
    fold(r, [stored(OWNER, i, e) for i, e in enumerate(history)])
    with Reader.from_url(deployed) as reader:
        ranked = reader.exploration(OWNER, "novel_situation", ["dark", "door"], limit=5)
        everything = reader.exploration(OWNER, "novel_situation", [])
        top = reader.exploration(OWNER, "novel_situation", ["dark"], limit=1)
        other = reader.exploration(OWNER, "curiosity", ["dark"])
    # open-door: tags {door, dark}, J = 1, Beta(1+3, 1+1) mean 4/6.
    # turn-on-light: tags {dark}, J = 1/2, Beta(1+9, 1) mean 10/11. shout shares no tag.
    assert [p["pattern"] for p in ranked] == ["open-door", "turn-on-light"]
    assert ranked[0]["score"] == pytest.approx(4 / 6)
    assert ranked[1]["score"] == pytest.approx(0.5 * 10 / 11)
    assert [p["pattern"] for p in everything] == ["turn-on-light", "shout", "open-door"]
    assert [p["pattern"] for p in top] == ["turn-on-light"]
    assert other == []


def test_thompson_sampling_is_reproducible_with_a_seed(r: redis.Redis, deployed: str) -> None:
    history = [_try(f"p{i}", ["x"], j < i) for i in range(6) for j in range(6)]
    fold(r, [stored(OWNER, i, e) for i, e in enumerate(history)])
    with Reader.from_url(deployed) as reader:
        runs = [reader.exploration(OWNER, "novel_situation", ["x"], seed=s) for s in (1, 1, 2)]
        means = reader.exploration(OWNER, "novel_situation", ["x"])
    assert runs[0] == runs[1]
    assert [p["estimate"] for p in runs[0]] != [p["estimate"] for p in runs[2]]
    assert all(0 < p["estimate"] < 1 for p in runs[0])
    assert [p["pattern"] for p in means] == ["p5", "p4", "p3", "p2", "p1", "p0"]


def test_bad_exploration_input_is_named(deployed: str) -> None:
    with pytest.raises(ValidationError, match="reward"):
        _try("p", [], True, float("nan"))
    with pytest.raises(ValidationError, match="trigger"):
        ExplorationRecorded(trigger="no spaces", pattern="p", success=True)
    with Reader.from_url(deployed) as reader:
        with pytest.raises(InvalidIdError) as bad_tag:
            reader.exploration(OWNER, "curiosity", ["a tag"])
        assert bad_tag.value.field == "context_tags"
        with pytest.raises(InvalidInputError) as bad_limit:
            reader.exploration(OWNER, "curiosity", [], limit=0)
        assert bad_limit.value.field == "limit"
