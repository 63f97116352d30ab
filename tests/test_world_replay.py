"""Replay rebuilds the world model: identical posteriors, configuration included."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import redis

from memstream.producers import Producer, Settings
from memstream.producers.events import EvidenceObserved
from memstream.producers.world import World, record_exploration
from memstream.projections.reader import VERSION_TTL_S, AsyncReader
from memstream.workers import dlq
from memstream.workers.replay import replay_all
from memstream.workers.replay_owner import replay_owner
from tests.workers_util import running_worker

OWNERS = ("ada", "bo", "cy")
PATHS = [["r1", "meeting", "north"], ["r2", "meeting", "north"], ["r3", "desk", "north"],
         ["desk", "north"], ["north"], ["r9", "desk", "north"]]  # fmt: skip


async def _everything(reader: AsyncReader) -> dict[str, Any]:
    """Every read the world model offers, for every owner: what must survive a replay."""
    out: dict[str, Any] = {}
    for owner in OWNERS:
        out[f"{owner}:config"] = await reader.world_config(owner, "office")
        for i, path in enumerate(PATHS):
            for variable, outcome in (("occupied", "yes"), ("mood", "loud")):
                key = f"{owner}:{i}:{variable}"
                out[key] = (
                    await reader.world_predict(owner, "office", path, variable),
                    await reader.world_interval(owner, "office", path, variable, outcome),
                    await reader.world_surprise(owner, "office", path, variable, outcome),
                )
        for level in (1, 2, 3):
            out[f"{owner}:summary:{level}"] = await reader.world_summary(owner, "office", level)
        out[f"{owner}:explore"] = await reader.exploration(owner, "curiosity", ["door"])
    return out


def _produce(url: str, r: redis.Redis, seed: int) -> list[Any]:
    """Append every owner's events; return each owner's last receipt."""
    rng = random.Random(seed)
    lasts = []
    with Producer.from_url(url) as producer:
        for owner in OWNERS:
            world = World(producer, owner, "office")
            # The first configuration lacks "mood"; the second (newer) one wins on replay.
            world.configure({"occupied": ["yes", "no"]}, levels=3, kappa=3.0)
            world.configure({"occupied": ["yes", "no"], "mood": ["calm", "loud", "busy", "odd"]},
                            levels=3, kappa=1.5, alpha0=0.5)  # fmt: skip
            for _ in range(60):
                variable = rng.choice(["occupied", "mood"])
                outcome = rng.choice(["yes", "no"] if variable == "occupied" else ["calm", "loud"])
                path = rng.choice(PATHS[:5])
                world.observe(path, variable, outcome, rng.uniform(0.01, 3))
                record_exploration(producer, owner, "curiosity", rng.choice(["probe", "ask"]),
                                   success=rng.random() < 0.6, reward=rng.uniform(-1, 2),
                                   context_tags=rng.sample(["door", "dark"], 1))  # fmt: skip
            # Outside the configuration, appended without the World check: dead-lettered
            # live and again on replay, never counted.
            event = EvidenceObserved(scenario="office", path=["north"], variable="mood",
                                     outcome="weird")  # fmt: skip
            lasts.append(producer.append(owner, event))
    return lasts


async def test_replay_rebuilds_identical_posteriors_and_configuration(
    deployed: str, r: redis.Redis
) -> None:
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        # Each owner's last append is the raw "weird" evidence: once it is dead-lettered,
        # everything before it in that owner's partition is applied (a fixed sleep was
        # too short on a loaded machine).
        for last in _produce(deployed, r, 5):
            assert (await reader.wait(last, timeout=30)).status == "dead_lettered"
        before = await _everything(reader)
        summary = await asyncio.to_thread(
            replay_all, r, Settings.from_url(deployed), grace_s=0.3, catchup_timeout_s=60
        )
        assert summary.to_version == 2
        # A reader trusts its cached version for VERSION_TTL_S (why N outlives the flip):
        # a replay faster than that leaves this reader on v1 until it looks again.
        await asyncio.sleep(VERSION_TTL_S)
        assert (await reader.deployment()).version == 2
        after = await _everything(reader)
        owner_summary = await asyncio.to_thread(replay_owner, r, "bo")
        assert owner_summary.stats.events > 0
        after_owner = await _everything(reader)
    assert before["ada:config"].kappa == 1.5
    assert "mood" in before["ada:config"].variables
    assert after == before
    dead = [d for d in dlq.iter_entries(r) if "outcome: weird" in d.reason]
    assert {d.group for d in dead} == {"v1", "v2"}
    assert after_owner == before
